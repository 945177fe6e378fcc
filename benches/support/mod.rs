//! What the site benchmarks share: a local CA (root and intermediate) issuing one ECDSA P-256
//! certificate per site, and where datasets are kept (`target/<name>/<N>/`, generated once).
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The two entries one onboarded, active site has in the store: its registration and its
/// certificate record (with its own key, sealed under `store`'s master key).
pub fn onboarded_site(
    ca: &BenchCa,
    store: &onehttps::store::Store,
    host: &str,
) -> Result<[(String, Vec<u8>); 2], Error> {
    use onehttps::onboarding::{SiteRecord, SiteStatus};
    let mut site = SiteRecord::new(
        onehttps::onboarding::Hosts::try_from(vec![host.to_owned()])?,
        vec!["http://127.0.0.1:9".to_owned()],
        "edge.bench.example",
    )?;
    site.status = SiteStatus::Active;
    site.reason = None;
    // Re-checked in a day: the queue holds every site, none is due during a run.
    site.next_check = onehttps::certs::record::unix(std::time::SystemTime::now()) + 86_400;
    let (record, _) = certificate(ca, store, host)?;
    let names = [onehttps::certs::HostName::parse(host)?];
    Ok([
        store.encode_json(&SiteRecord::path(&site.id), &site)?,
        onehttps::managed::records::CertRecords::new(store).encode(&names, &record)?,
    ])
}

/// A fresh certificate record for `host` (as an issuance or renewal stores it) and its
/// serial.
pub fn certificate(
    ca: &BenchCa,
    store: &onehttps::store::Store,
    host: &str,
) -> Result<(onehttps::certs::CertRecord, String), Error> {
    use onehttps::certs::{CertBundle, CertRecord, HostName, Source};
    let names = [HostName::parse(host)?];
    let leaf = ca.issue(host)?;
    let bundle = CertBundle::from_stored(
        leaf.chain_pem.as_bytes(),
        &rustls::pki_types::PrivateKeyDer::try_from(leaf.key_der.as_slice())?,
    )?;
    let mut record = CertRecord::pending(&names, Source::Acme);
    let sealed =
        onehttps::managed::records::CertRecords::new(store).seal_key(&names, &leaf.key_der)?;
    record.set_issued(leaf.chain_pem, sealed, &bundle.info);
    Ok((record, bundle.info.serial.clone()))
}

/// A port free on 127.0.0.1 now.
pub fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A root and an intermediate; leaves are signed by the intermediate.
pub struct BenchCa {
    pub root_der: Vec<u8>,
    inter_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// One issued site: its chain (leaf, intermediate) and its private key (PKCS#8 DER).
pub struct Leaf {
    pub chain_pem: String,
    pub key_der: Vec<u8>,
}

impl BenchCa {
    pub fn new() -> Result<Self, Error> {
        let root_key = KeyPair::generate()?;
        let mut root = CertificateParams::new(Vec::<String>::new())?;
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.distinguished_name = name("onehttps bench root");
        let root_cert = root.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root, root_key);
        let inter_key = KeyPair::generate()?;
        let mut inter = CertificateParams::new(Vec::<String>::new())?;
        inter.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        inter.distinguished_name = name("onehttps bench intermediate");
        let inter_pem = inter.signed_by(&inter_key, &root_issuer)?.pem();
        Ok(Self {
            root_der: root_cert.der().to_vec(),
            inter_pem,
            issuer: Issuer::new(inter, inter_key),
        })
    }

    /// Writes the CA to `path` (root DER, intermediate PEM and key PEM), to issue from it
    /// again in a later run ([`load`](Self::load)).
    pub fn save(&self, path: &std::path::Path) -> Result<(), Error> {
        let parts = [
            hex(&self.root_der),
            self.inter_pem.clone(),
            self.issuer.key().serialize_pem(),
        ];
        std::fs::write(path, parts.join("\n--\n"))?;
        Ok(())
    }

    pub fn load(path: &std::path::Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)?;
        let parts: Vec<&str> = text.split("\n--\n").collect();
        let [root, inter_pem, key] = parts[..] else {
            return Err(format!("{} is not a saved bench CA", path.display()).into());
        };
        let root_der = (0..root.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&root[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()?;
        Ok(Self {
            root_der,
            inter_pem: inter_pem.to_owned(),
            issuer: Issuer::from_ca_cert_pem(inter_pem, KeyPair::from_pem(key)?)?,
        })
    }

    /// A certificate for `host` with a key of its own.
    pub fn issue(&self, host: &str) -> Result<Leaf, Error> {
        let key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec![host.to_owned()])?.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            chain_pem: leaf.pem() + &self.inter_pem,
            key_der: key.serialize_der(),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// `make(i)` for every `i` of `range`, spread over every core (thread `t` takes the `t`-th,
/// then every `threads`-th index); each thread's results, one thread after another.
pub fn on_every_core<T: Send>(
    range: Range<usize>,
    make: impl Fn(usize) -> Result<T, Error> + Sync,
) -> Result<Vec<T>, Error> {
    let threads = std::thread::available_parallelism().map_or(2, |p| p.get());
    let parts: Vec<Vec<T>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (make, range) = (&make, range.clone());
                scope.spawn(move || {
                    (range.start + t..range.end)
                        .step_by(threads)
                        .map(make)
                        .collect::<Result<Vec<T>, Error>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| Error::from("a generator thread panicked"))?
            })
            .collect::<Result<_, _>>()
    })?;
    Ok(parts.into_iter().flatten().collect())
}

/// `target/<bench>/<n>/`, where a benchmark keeps its dataset of `n` sites.
pub fn dataset_dir(bench: &str, n: usize) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    target.join(bench).join(n.to_string())
}

pub fn site_name(i: usize) -> String {
    format!("site{i}.bench.example")
}

/// Resident memory of process `pid` (`self` for this one), in bytes.
pub fn rss_bytes(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A TLS client that trusts only `root` (DER).
pub fn tls_client(root: &[u8]) -> Result<Arc<ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(root.to_vec()))?;
    Ok(Arc::new(
        ClientConfig::builder_with_provider(Arc::new(onehttps::tls::server_config::provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// One TLS handshake to `host` (its certificate verified against the bench root).
pub fn handshake(client: &Arc<ClientConfig>, addr: SocketAddr, host: &str) -> Result<(), Error> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let conn = ClientConnection::new(client.clone(), ServerName::try_from(host.to_owned())?)?;
    let mut tls = StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("HEAD / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte)?;
    Ok(())
}
