//! The validation-path probe: before an order, the edge publishes a probe answer for a name
//! (on this node and, in a fleet, on every node) and fetches it the way the CA will — the name
//! resolved through public DNS, a connection to that address on the challenge's port, HTTP-01
//! `GET /.well-known/acme-challenge/<token>` with the name as Host, or a TLS-ALPN-01
//! handshake (`acme-tls/1`, the name as SNI). Whatever answers must give back the probe's own
//! answer: a closed port, a firewall or another server in the way is found without spending a
//! CA attempt.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Challenges;
use super::challenges::{AnswerCertError, tls_alpn01_cert};
use super::shared_answers::{ShareError, share};
use crate::config::ChallengeKind;
use crate::served_leaf::ReachError;
use crate::store::Store;

/// Bound of one fetch (connect, request, answer).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries, a moment apart: in a fleet the answer reaches the other nodes through the store.
const TRIES: usize = 3;
const TRY_GAP: Duration = Duration::from_millis(500);
/// Most of an HTTP answer read.
const MAX_ANSWER: usize = 16 * 1024;

/// A challenge whose path can be probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Http01,
    TlsAlpn01,
}

/// Where the CA connects for one challenge kind.
#[derive(Debug, Clone, Copy)]
pub struct Path {
    pub kind: Via,
    pub port: u16,
}

/// Why the validation path does not lead to this edge, or could not be probed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Share(#[from] ShareError),
    #[error(transparent)]
    AnswerCert(#[from] AnswerCertError),
    #[error(
        "not ordered: the CA would validate {name} ({}) with {} at {target}, and {found}: make port {} of {} reach this edge, or list only the challenges it can answer in acme.challenges",
        .path.challenge(), .path.how(name), .target.port(), .target.ip()
    )]
    Unreachable {
        name: String,
        path: Path,
        target: SocketAddr,
        found: Found,
    },
}

/// What the last fetch through the validation path found instead of this edge's answer.
#[derive(Debug, thiserror::Error)]
pub enum Found {
    #[error(transparent)]
    Unreachable(#[from] ReachError),
    #[error(
        "what answered there (HTTP status {status}) is not this edge: another server is in the way"
    )]
    OtherHttpServer { status: String },
    #[error("what answered there showed another certificate: another server is in the way")]
    OtherCertificate,
}

impl Path {
    /// The challenge's name as the CA's documents spell it.
    fn challenge(&self) -> &'static str {
        match self.kind {
            Via::Http01 => "HTTP-01",
            Via::TlsAlpn01 => "TLS-ALPN-01",
        }
    }

    /// What the CA fetches for `name` along this path.
    fn how(&self, name: &str) -> String {
        match self.kind {
            Via::Http01 => format!("http://{name}/.well-known/acme-challenge/…"),
            Via::TlsAlpn01 => format!("a TLS handshake for {name}"),
        }
    }
}

/// Publishes a probe answer for `name` and fetches it from `address` as the CA would.
pub(super) async fn probe(
    store: &Arc<Store>,
    challenges: &Arc<Challenges>,
    name: &str,
    address: std::net::IpAddr,
    path: Path,
) -> Result<(), ProbeError> {
    let token = crate::seal::random_hex(16);
    let answer = format!("onehttps-probe.{}", crate::seal::random_hex(16));
    let kind = match path.kind {
        Via::Http01 => ChallengeKind::Http01,
        Via::TlsAlpn01 => ChallengeKind::TlsAlpn01,
    };
    let _shared = share(store, kind, name, &token, &answer).await?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, answer.as_bytes());
    let _local = match path.kind {
        Via::Http01 => challenges.add_http01(name.to_owned(), token.clone(), answer.clone()),
        Via::TlsAlpn01 => {
            let cert = tls_alpn01_cert(name, digest.as_ref())?;
            challenges.add_tls_alpn01(name.to_owned(), cert)
        }
    };
    let target = SocketAddr::new(address, path.port);
    let mut last = Found::OtherCertificate;
    for attempt in 0..TRIES {
        if attempt > 0 {
            tokio::time::sleep(TRY_GAP).await;
        }
        let fetched = match path.kind {
            Via::Http01 => fetch_http01(target, name, &token, &answer).await,
            Via::TlsAlpn01 => fetch_tls_alpn01(target, name, digest.as_ref()).await,
        };
        match fetched {
            Ok(()) => return Ok(()),
            Err(why) => last = why,
        }
    }
    Err(ProbeError::Unreachable {
        name: name.to_owned(),
        path,
        target,
        found: last,
    })
}

async fn fetch_http01(
    target: SocketAddr,
    name: &str,
    token: &str,
    answer: &str,
) -> Result<(), Found> {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(target)
            .await
            .map_err(ReachError::connect)?;
        let request = format!(
            "GET /.well-known/acme-challenge/{token} HTTP/1.1\r\nHost: {name}\r\nUser-Agent: onehttps-preflight\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(request.as_bytes())
            .await
            .map_err(ReachError::Send)?;
        let mut body = Vec::new();
        (&mut tcp)
            .take(MAX_ANSWER as u64)
            .read_to_end(&mut body)
            .await
            .map_err(ReachError::Read)?;
        Ok::<_, ReachError>(String::from_utf8_lossy(&body).into_owned())
    };
    let response = tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| ReachError::Timeout(FETCH_TIMEOUT))??;
    let status = response
        .split_whitespace()
        .nth(1)
        .unwrap_or("no HTTP answer");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    if status == "200" && body.trim() == answer {
        Ok(())
    } else {
        Err(Found::OtherHttpServer {
            status: status.to_owned(),
        })
    }
}

async fn fetch_tls_alpn01(target: SocketAddr, name: &str, digest: &[u8]) -> Result<(), Found> {
    let mut config = crate::served_leaf::any_certificate_client(false);
    config.alpn_protocols = vec![super::challenges::ACME_TLS_ALPN.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let leaf = crate::served_leaf::fetch(&connector, target, name, FETCH_TIMEOUT).await?;
    if leaf.windows(digest.len()).any(|w| w == digest) {
        Ok(())
    } else {
        Err(Found::OtherCertificate)
    }
}
