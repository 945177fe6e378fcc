//! The HTTP client the ACME issuer talks to its CA with: instant-acme's own (hyper over
//! rustls, the platform's roots or `acme.ca_roots`), paced so that no more than the CA's
//! requests-per-second ceiling leave this process — nonces, polls and downloads included.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::time::Instant;

type Inner = Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// instant-acme's HTTP client behind a pacer. Clones share the pace: every request to one
/// directory (the account's, the directory's metadata) counts against one ceiling.
#[derive(Clone)]
pub(super) struct PacedClient {
    inner: Inner,
    /// Time between two requests; `None` = unpaced.
    gap: Option<Duration>,
    /// When the next request may leave.
    next: Arc<tokio::sync::Mutex<Instant>>,
}

/// Why the ACME client could not be built (kept, and reported at every order).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcmeClientError {
    #[error("cannot use acme.ca_roots {}: {cause}", .path.display())]
    CaRoots {
        path: std::path::PathBuf,
        cause: String,
    },
    #[error("cannot build the ACME client: {cause}")]
    Platform { cause: String },
}

impl PacedClient {
    /// A client trusting the platform's roots, or only the PEM roots at `ca_roots`, sending
    /// at most `per_second` requests a second (`None`: no ceiling).
    pub(super) fn new(
        ca_roots: Option<&Path>,
        per_second: Option<u32>,
    ) -> Result<Self, AcmeClientError> {
        let builder = match ca_roots {
            Some(path) => {
                let bad_roots = |e: &dyn std::fmt::Display| AcmeClientError::CaRoots {
                    path: path.to_owned(),
                    cause: e.to_string(),
                };
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| bad_roots(&e))?;
                for cert in certs {
                    roots.add(cert).map_err(|e| bad_roots(&e))?;
                }
                HttpsConnectorBuilder::new().with_tls_config(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                )
            }
            None => HttpsConnectorBuilder::new()
                .try_with_platform_verifier()
                .map_err(|e| AcmeClientError::Platform {
                    cause: e.to_string(),
                })?,
        };
        let connector = builder.https_only().enable_http1().enable_http2().build();
        Ok(Self {
            inner: Client::builder(TokioExecutor::new()).build(connector),
            gap: per_second
                .filter(|n| *n > 0)
                .map(|n| Duration::from_secs(1) / n),
            next: Arc::new(tokio::sync::Mutex::new(Instant::now())),
        })
    }
}

impl HttpClient for PacedClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let inner = self.inner.clone();
        let gap = self.gap;
        let next = self.next.clone();
        Box::pin(async move {
            if let Some(gap) = gap {
                let slot = {
                    let mut next = next.lock().await;
                    let slot = (*next).max(Instant::now());
                    *next = slot + gap;
                    slot
                };
                tokio::time::sleep_until(slot).await;
            }
            match inner.request(req).await {
                Ok(response) => Ok(BytesResponse::from(response)),
                Err(e) => Err(instant_acme::Error::Other(Box::new(e))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_leave_no_faster_than_the_ceiling() {
        let client = PacedClient::new(None, Some(20)).unwrap();
        let started = Instant::now();
        // Nothing listens on port 9 of loopback: each request fails at once, after its slot.
        for _ in 0..5 {
            let req = Request::get("https://127.0.0.1:9/")
                .body(BodyWrapper::default())
                .unwrap();
            assert!(client.request(req).await.is_err());
        }
        // Five requests at 20 a second: the fifth leaves 200 ms after the first.
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }
}
