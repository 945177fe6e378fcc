//! Micro-benchmarks of the edge's hot paths, without sockets: certificate lookup by SNI in
//! the site table, and the pure CPU cost of a TLS 1.3 handshake (full and resumed) between a
//! rustls client and the edge's own server configuration.
//!
//! Run: `cargo bench --bench edge`. The load benchmark against nginx and haproxy is separate.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rustls::client::{ClientConfig, ClientConnection};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::ServerConnection;
use rustls::{RootCertStore, ServerConfig};

use onehttps::certs::ServedCert;
use onehttps::certs::{CertBundle, HostName, Source};
use onehttps::config::{CertFiles, IssuerKind, MinTlsVersion, OriginUrl, SiteConfig, TlsSettings};
use onehttps::sites::Site;
use onehttps::tls::{KeyCache, Routes, SiteTable, TableResolver, server_config};

/// One certificate for `*.bench.test` and `bench.test`, shared by every site.
struct BenchCert {
    bundle: CertBundle,
    cert_der: CertificateDer<'static>,
}

fn bench_cert() -> BenchCert {
    let key = rcgen::KeyPair::generate().expect("generate bench key");
    let params = rcgen::CertificateParams::new(vec!["*.bench.test".into(), "bench.test".into()])
        .expect("bench certificate params");
    let cert = params.self_signed(&key).expect("self-sign bench cert");
    let cert_der = cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let bundle =
        CertBundle::from_der(vec![cert_der.clone()], &key_der).expect("bench bundle is valid");
    BenchCert { bundle, cert_der }
}

fn site(hosts: Vec<HostName>, cert: &BenchCert) -> Arc<Site> {
    let config = SiteConfig {
        hosts,
        origins: vec![OriginUrl {
            authority: http::uri::Authority::from_static("127.0.0.1:9"),
        }],
        cert: Some(Box::new((
            CertFiles {
                cert: PathBuf::from("/nonexistent/bench.pem"),
                key: PathBuf::from("/nonexistent/bench.key"),
            },
            cert.bundle.clone(),
        ))),
        hsts: None,
        issuer: IssuerKind::Internal,
        managed: false,
        registered: false,
    };
    let served = ServedCert::new(cert.bundle.clone(), Source::Uploaded);
    Arc::new(Site::build(config, Some(Arc::new(served)), Duration::ZERO))
}

/// A table of `n` sites, each with one exact name, plus one wildcard site.
fn table(n: usize, cert: &BenchCert) -> Arc<SiteTable> {
    let mut sites: Vec<Arc<Site>> = (0..n)
        .map(|i| {
            let name = HostName::parse(&format!("site{i}.bench.test")).expect("bench name");
            site(vec![name], cert)
        })
        .collect();
    let wildcard = HostName::parse("*.wild.bench.test").expect("bench wildcard");
    sites.push(site(vec![wildcard], cert));
    let table = Arc::new(SiteTable::new());
    table.publish(Routes::new(sites, None));
    table
}

fn lookup(c: &mut Criterion) {
    let cert = bench_cert();
    let mut group = c.benchmark_group("sni_lookup");
    for n in [1_000usize, 100_000, 1_000_000] {
        let table = table(n, &cert);
        let exact = format!("site{}.bench.test", n / 2);
        group.bench_with_input(BenchmarkId::new("exact", n), &exact, |b, sni| {
            b.iter(|| black_box(table.lookup(Some(black_box(sni)))))
        });
        group.bench_with_input(
            BenchmarkId::new("wildcard", n),
            "deep.wild.bench.test",
            |b, sni| b.iter(|| black_box(table.lookup(Some(black_box(sni))))),
        );
        group.bench_with_input(BenchmarkId::new("miss", n), "nope.example", |b, sni| {
            b.iter(|| black_box(table.lookup(Some(black_box(sni)))))
        });
    }
    group.finish();
}

fn tls_settings() -> TlsSettings {
    TlsSettings {
        min_version: MinTlsVersion::Tls12,
        hsts: None,
        session_tickets: true,
        session_cache_entries: 1024,
        key_cache_entries: 1024,
        default_host: None,
        watch_interval: Duration::from_secs(1),
    }
}

/// Runs a handshake to completion in memory, moving bytes between the two sides.
fn handshake(server_config: &Arc<ServerConfig>, client_config: &Arc<ClientConfig>) {
    let name = ServerName::try_from("site1.bench.test").expect("bench server name");
    let mut client = ClientConnection::new(client_config.clone(), name).expect("client connection");
    let mut server = ServerConnection::new(server_config.clone()).expect("server connection");
    let mut buf = Vec::with_capacity(16 * 1024);
    while client.is_handshaking() || server.is_handshaking() {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).expect("client writes");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).expect("server reads");
        }
        server.process_new_packets().expect("server processes");
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).expect("server writes");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).expect("client reads");
        }
        client.process_new_packets().expect("client processes");
    }
    black_box((&client, &server));
}

fn handshakes(c: &mut Criterion) {
    let cert = bench_cert();
    let table = table(1_000, &cert);
    let keys = Arc::new(KeyCache::new(1_000));
    let server_config = server_config::build(
        &tls_settings(),
        Arc::new(TableResolver::new(table.clone(), keys)),
        None,
    )
    .expect("server config builds");
    let mut roots = RootCertStore::empty();
    roots.add(cert.cert_der.clone()).expect("bench root");
    let client = |resume: bool| {
        let mut config = ClientConfig::builder_with_provider(Arc::new(server_config::provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("client versions")
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        if !resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Arc::new(config)
    };

    let mut group = c.benchmark_group("tls13_handshake");
    let full = client(false);
    group.bench_function("full", |b| b.iter(|| handshake(&server_config, &full)));
    let resumed = client(true);
    handshake(&server_config, &resumed);
    group.bench_function("resumed", |b| {
        b.iter(|| handshake(&server_config, &resumed))
    });
    group.finish();
}

/// Replacing a site's certificate (what a renewal or a file change does).
fn swap(c: &mut Criterion) {
    let cert = bench_cert();
    let table = table(1_000, &cert);
    let site = table.lookup(Some("site1.bench.test")).expect("bench site");
    c.bench_function("certificate_swap", |b| {
        b.iter(|| site.replace_cert(ServedCert::new(cert.bundle.clone(), Source::Acme)))
    });
}

/// The floor: the server's cryptography in a full TLS 1.3 handshake, alone — one ECDSA P-256
/// signature and one X25519 key agreement.
fn crypto_floor(c: &mut Criterion) {
    use aws_lc_rs::{agreement, rand::SystemRandom, signature};
    let rng = SystemRandom::new();
    let pkcs8 =
        signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .expect("bench key");
    let key = signature::EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        pkcs8.as_ref(),
    )
    .expect("bench key parses");
    let message = [7u8; 100];
    c.bench_function("floor/ecdsa_p256_sign", |b| {
        b.iter(|| black_box(key.sign(&rng, black_box(&message)).expect("sign")))
    });
    let peer =
        agreement::EphemeralPrivateKey::generate(&agreement::X25519, &rng).expect("peer key");
    let peer_public = peer.compute_public_key().expect("peer public");
    c.bench_function("floor/x25519_keygen_and_agree", |b| {
        b.iter(|| {
            let mine =
                agreement::EphemeralPrivateKey::generate(&agreement::X25519, &rng).expect("key");
            let public =
                agreement::UnparsedPublicKey::new(&agreement::X25519, peer_public.as_ref());
            black_box(agreement::agree_ephemeral(mine, public, (), |secret| {
                Ok(secret.len())
            }))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = lookup, swap, handshakes, crypto_floor
}
criterion_main!(benches);
