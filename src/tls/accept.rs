//! Reads the ClientHello and decides before any certificate is chosen: a known SNI (or none,
//! with a default site) continues the handshake; an unknown one gets an `unrecognized_name`
//! alert. An ACME TLS-ALPN-01 validation (ALPN `acme-tls/1`, RFC 8737) is answered here,
//! before normal selection, with the challenge certificate and then closed.

use std::io;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};

use super::table::SiteTable;
use crate::issue::Challenges;
use crate::issue::challenges::ACME_TLS_ALPN;
use crate::sites::Site;

/// A fatal `unrecognized_name` (112) alert in a plaintext TLS record (RFC 8446 §6; RFC 6066 §3).
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

/// Why a TLS handshake did not complete. All of these are the client's doing or the network's.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("client hello unreadable")]
    ClientHello(#[source] io::Error),
    #[error("no site for SNI {0:?}")]
    UnknownName(Option<String>),
    #[error("site {0} has no certificate yet")]
    NoCertificate(String),
    #[error("answered an ACME TLS-ALPN-01 validation for {0}")]
    AcmeValidation(String),
    #[error("TLS handshake failed")]
    Tls(#[source] io::Error),
}

/// Runs the server side of a handshake on `io` (a TCP connection, or any byte stream);
/// returns the stream and the site it serves.
pub async fn accept<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    table: &SiteTable,
    challenges: &Challenges,
    config: Arc<ServerConfig>,
) -> Result<(TlsStream<IO>, Arc<Site>), HandshakeError> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), io)
        .await
        .map_err(HandshakeError::ClientHello)?;
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_owned);
    let acme = hello
        .alpn()
        .is_some_and(|mut protocols| protocols.all(|p| p == ACME_TLS_ALPN));
    if acme && let Some(name) = sni {
        return answer_tls_alpn01(start, challenges, name).await;
    }
    let site = match table.lookup(sni.as_deref()) {
        Some(site) if site.has_cert() => site,
        found => {
            let StartHandshake { mut io, .. } = start;
            // Best effort: the client is told why, then the connection is closed.
            let _ = io.write_all(&UNRECOGNIZED_NAME_ALERT).await;
            let _ = io.shutdown().await;
            return Err(match found {
                Some(site) => HandshakeError::NoCertificate(site.name().to_owned()),
                None => HandshakeError::UnknownName(sni),
            });
        }
    };
    // The certificate is the routed site's, not a second lookup's.
    let handshake = super::resolver::with_chosen_site(&site, || start.into_stream(config));
    let stream = handshake.await.map_err(HandshakeError::Tls)?;
    Ok((stream, site))
}

/// Completes a TLS-ALPN-01 validation handshake with the pending challenge certificate for
/// `name` (or refuses it), then closes: no application data is ever exchanged.
async fn answer_tls_alpn01<IO: AsyncRead + AsyncWrite + Unpin>(
    start: StartHandshake<IO>,
    challenges: &Challenges,
    name: String,
) -> Result<(TlsStream<IO>, Arc<Site>), HandshakeError> {
    let lower = name.to_ascii_lowercase();
    let Some(cert) = challenges.wait_for(|c| c.tls_alpn01(&lower)).await else {
        let StartHandshake { mut io, .. } = start;
        let _ = io.write_all(&UNRECOGNIZED_NAME_ALERT).await;
        return Err(HandshakeError::UnknownName(Some(name)));
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(super::server_config::provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| HandshakeError::Tls(io::Error::other(e)))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(FixedCert(cert)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    let mut stream = start
        .into_stream(Arc::new(config))
        .await
        .map_err(HandshakeError::Tls)?;
    let _ = stream.shutdown().await;
    Err(HandshakeError::AcmeValidation(name))
}

/// Serves one certificate whatever the ClientHello says.
#[derive(Debug)]
struct FixedCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}
