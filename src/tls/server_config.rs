//! The one rustls `ServerConfig` of the process: TLS 1.2/1.3 with AEAD forward-secret suites,
//! X25519MLKEM768/X25519/P-256 key exchange, ALPN h2 + http/1.1, rotating ticket keys and a
//! TLS 1.2 session cache. Built once; certificate swaps never rebuild it.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::server::{ResolvesServerCert, ServerSessionMemoryCache};
use rustls::{CipherSuite, ServerConfig, SupportedCipherSuite};

use crate::config::{MinTlsVersion, TlsSettings};

/// ALPN protocol ids, in server preference order.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// aws-lc-rs with our key exchange groups and suites.
pub fn provider() -> CryptoProvider {
    let base = aws_lc_rs::default_provider();
    CryptoProvider {
        // rustls offers only AEAD suites with (EC)DHE key exchange; keep them all, SHA-256
        // suites first (see `build`).
        cipher_suites: {
            let mut suites: Vec<SupportedCipherSuite> = base
                .cipher_suites
                .iter()
                .copied()
                .filter(is_forward_secret_aead)
                .collect();
            suites.sort_by_key(|s| uses_sha384(s.suite()));
            suites
        },
        kx_groups: vec![
            kx_group::X25519MLKEM768,
            kx_group::X25519,
            kx_group::SECP256R1,
        ],
        ..base
    }
}

fn uses_sha384(suite: CipherSuite) -> bool {
    matches!(
        suite,
        CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    )
}

fn is_forward_secret_aead(suite: &SupportedCipherSuite) -> bool {
    match suite {
        SupportedCipherSuite::Tls13(_) => true,
        SupportedCipherSuite::Tls12(s) => s.kx == rustls::crypto::KeyExchangeAlgorithm::ECDHE,
    }
}

/// Builds the server configuration around `resolver`.
/// `shared_tickets`: the fleet's ticket keys (every node resumes every node's tickets);
/// `None` on a single node, which rotates its own.
pub fn build(
    settings: &TlsSettings,
    resolver: Arc<dyn ResolvesServerCert>,
    shared_tickets: Option<Arc<dyn rustls::server::ProducesTickets>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        MinTlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinTlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    // Our order wins: AES-128-GCM and ChaCha20 with SHA-256 before AES-256-GCM with SHA-384.
    // Every TLS 1.3 handshake runs some twenty HKDF steps; SHA-256 has CPU instructions on
    // current x86 and ARM, SHA-384 does not, and the key schedule was a tenth of a full
    // handshake's server CPU with SHA-384 (OpenSSL clients list AES-256 first).
    config.ignore_client_order = true;
    // TLS 1.2 resumption by session id; TLS 1.3 resumption by stateless tickets.
    config.session_storage = ServerSessionMemoryCache::new(settings.session_cache_entries);
    if settings.session_tickets {
        // Ticket keys rotate every 6 hours; tickets under the previous key stay valid.
        config.ticketer = match shared_tickets {
            Some(shared) => shared,
            None => aws_lc_rs::Ticketer::new()?,
        };
    }
    Ok(Arc::new(config))
}
