//! Reads the ClientHello and decides before any certificate is chosen: a known SNI (or none,
//! with a default site) continues the handshake; an unknown one gets an `unrecognized_name`
//! alert. The ACME `acme-tls/1` ALPN will be answered here, before normal selection.

use std::io;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::Acceptor;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};

use super::table::SiteTable;
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
    #[error("TLS handshake failed")]
    Tls(#[source] io::Error),
}

/// Runs the server side of a handshake on `tcp`; returns the stream and the site it serves.
pub async fn accept(
    tcp: TcpStream,
    table: &SiteTable,
    config: Arc<ServerConfig>,
) -> Result<(TlsStream<TcpStream>, Arc<Site>), HandshakeError> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), tcp)
        .await
        .map_err(HandshakeError::ClientHello)?;
    let sni = start.client_hello().server_name().map(str::to_owned);
    let Some(site) = table.lookup(sni.as_deref()) else {
        let StartHandshake { mut io, .. } = start;
        // Best effort: the client is told why, then the connection is closed.
        let _ = io.write_all(&UNRECOGNIZED_NAME_ALERT).await;
        let _ = io.shutdown().await;
        return Err(HandshakeError::UnknownName(sni));
    };
    let stream = start
        .into_stream(config)
        .await
        .map_err(HandshakeError::Tls)?;
    Ok((stream, site))
}
