//! What certificate an address serves: a TLS client that takes any certificate (it only
//! reads what it is shown) and the one handshake that fetches the leaf, each failure said
//! in words a site owner can act on. Used by the validation-path probe before an order
//! (`issue/probe.rs`) and by the self-check after a swap (`managed/self_check.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Why an address could not be reached as a client, or did not show a certificate.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    #[error("`{sni}` is not a server name ({reason})")]
    BadServerName { sni: String, reason: String },
    #[error("nothing accepts connections there (connection refused)")]
    Refused,
    #[error("the connection failed ({0})")]
    Connect(std::io::Error),
    #[error("the TLS handshake failed ({0})")]
    Handshake(std::io::Error),
    #[error("no certificate was shown")]
    NoCertificate,
    #[error("the request could not be sent ({0})")]
    Send(std::io::Error),
    #[error("the answer could not be read ({0})")]
    Read(std::io::Error),
    #[error("nothing answered within {}s", .0.as_secs())]
    Timeout(Duration),
}

impl ReachError {
    /// What a failed TCP connect says.
    pub fn connect(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Self::Refused,
            _ => Self::Connect(e),
        }
    }
}

/// The leaf certificate `address` shows in a handshake with `sni` (within `timeout`), or
/// what went wrong.
pub async fn fetch(
    connector: &tokio_rustls::TlsConnector,
    address: SocketAddr,
    sni: &str,
    timeout: Duration,
) -> Result<CertificateDer<'static>, ReachError> {
    let server_name =
        ServerName::try_from(sni.to_owned()).map_err(|e| ReachError::BadServerName {
            sni: sni.to_owned(),
            reason: e.to_string(),
        })?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(ReachError::connect)?;
        let tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(ReachError::Handshake)?;
        tls.get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first().cloned())
            .ok_or(ReachError::NoCertificate)
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| ReachError::Timeout(timeout))?
}

/// A client that takes any certificate; `check_signature`: the handshake's signature is
/// verified against it (a TLS-ALPN-01 certificate, whose critical acmeIdentifier extension no
/// certificate parser accepts, can only be read without).
pub fn any_certificate_client(check_signature: bool) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| rustls::ClientConfig::builder())
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate {
            provider,
            check_signature,
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A verifier that takes any certificate; with `check_signature`, the handshake's
/// signature is still checked against it (the server holds the key of what it showed).
#[derive(Debug)]
pub struct AnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
    check_signature: bool,
}

impl AnyCertificate {
    /// With `provider`'s signature algorithms.
    pub fn new(provider: Arc<rustls::crypto::CryptoProvider>, check_signature: bool) -> Self {
        Self {
            provider,
            check_signature,
        }
    }
}

/// rustls' signature check of one TLS version.
type VerifySignature = fn(
    &[u8],
    &CertificateDer<'_>,
    &DigitallySignedStruct,
    &rustls::crypto::WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error>;

impl AnyCertificate {
    /// `verify` with the provider's algorithms, or a pass when signatures are not checked.
    fn signature(
        &self,
        verify: VerifySignature,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.check_signature {
            return Ok(HandshakeSignatureValid::assertion());
        }
        verify(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(rustls::crypto::verify_tls12_signature, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(rustls::crypto::verify_tls13_signature, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
