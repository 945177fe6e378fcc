//! The one rustls `ServerConfig` of the process: TLS 1.2/1.3 with AEAD forward-secret suites,
//! X25519MLKEM768/X25519/P-256 key exchange, ALPN h2 + http/1.1, rotating ticket keys and a
//! TLS 1.2 session cache. Built once; certificate swaps never rebuild it.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::server::{ResolvesServerCert, ServerSessionMemoryCache};
use rustls::{ServerConfig, SupportedCipherSuite};

use crate::config::{MinTlsVersion, TlsSettings};

/// ALPN protocol ids, in server preference order.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// aws-lc-rs with our key exchange groups and suites.
pub fn provider() -> CryptoProvider {
    let base = aws_lc_rs::default_provider();
    CryptoProvider {
        // rustls offers only AEAD suites with (EC)DHE key exchange; keep them all.
        cipher_suites: base
            .cipher_suites
            .iter()
            .copied()
            .filter(is_forward_secret_aead)
            .collect(),
        kx_groups: vec![
            kx_group::X25519MLKEM768,
            kx_group::X25519,
            kx_group::SECP256R1,
        ],
        ..base
    }
}

fn is_forward_secret_aead(suite: &SupportedCipherSuite) -> bool {
    match suite {
        SupportedCipherSuite::Tls13(_) => true,
        SupportedCipherSuite::Tls12(s) => s.kx == rustls::crypto::KeyExchangeAlgorithm::ECDHE,
    }
}

/// Builds the server configuration around `resolver`.
pub fn build(
    settings: &TlsSettings,
    resolver: Arc<dyn ResolvesServerCert>,
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
    // TLS 1.2 resumption by session id; TLS 1.3 resumption by stateless tickets.
    config.session_storage = ServerSessionMemoryCache::new(settings.session_cache_entries);
    if settings.session_tickets {
        // Ticket keys rotate every 6 hours; tickets under the previous key stay valid.
        config.ticketer = aws_lc_rs::Ticketer::new()?;
    }
    Ok(Arc::new(config))
}
