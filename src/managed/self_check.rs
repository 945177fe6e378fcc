//! The self-check after every certificate swap: for each name of a certificate that entered
//! service (issued, renewed, uploaded, changed on disk, adopted from the fleet), the edge
//! connects to the address clients reach (`server.self_check_address`, by default its own
//! HTTPS listener) with that name as SNI and compares the serial it is served with the one
//! the table holds. A mismatch — a load balancer pointing at an old node, a stale process on
//! the port, a table that did not take the swap — is an ERROR, a `certificate.self_check_failed`
//! event and a metric; the swap is made again and checked again, a few times.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::certs::HostName;
use crate::events::Events;
use crate::tls::SiteTable;

/// Connect + handshake bound of one check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits before checking again after a mismatch (the swap is made again before each).
const RETRIES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
];

/// What checking one name found.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// Served what the table holds.
    Same,
    /// Served `got` where the table holds `want`.
    Mismatch { want: String, got: String },
    /// The table no longer serves the name, or holds another certificate than the one
    /// being checked (a newer swap is checked by itself).
    Superseded,
    /// No handshake: the reason.
    Unreachable(String),
}

/// Checks each swap announced on `changes` (the certificate owner's stream; a state
/// written without a swap is not checked) until `cancel`.
pub async fn run(
    table: Arc<SiteTable>,
    address: SocketAddr,
    mut changes: broadcast::Receiver<super::CertChange>,
    events: Arc<Events>,
    cancel: CancellationToken,
) {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config()));
    loop {
        let names = tokio::select! {
            () = cancel.cancelled() => return,
            received = changes.recv() => match received {
                Ok(change) if change.installed => change.names,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "self-check skipped swaps (too many at once)");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let (table, events, connector) = (table.clone(), events.clone(), connector.clone());
        tokio::spawn(async move {
            check_swap(&table, address, &connector, &events, &names).await;
        });
    }
}

/// Checks every name of one swap, retrying the swap on a mismatch.
async fn check_swap(
    table: &SiteTable,
    address: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    events: &Events,
    names: &[HostName],
) {
    let Some(expected) = table
        .lookup(names.first().map(HostName::as_str))
        .and_then(|site| site.served_cert())
        .map(|cert| cert.bundle.info.serial.clone())
    else {
        return;
    };
    for name in names {
        let mut tries = RETRIES.iter();
        loop {
            match check_name(table, address, connector, name, &expected).await {
                Found::Same => {
                    crate::stats::bump(&crate::stats::STATS.self_checks);
                    tracing::info!(%name, serial = %expected, "self-check passed: the swapped certificate is served");
                    break;
                }
                Found::Superseded => return,
                Found::Unreachable(reason) => {
                    // Not a wrong certificate: the address is not answering (stopping, or
                    // misconfigured). Said once, not retried.
                    tracing::warn!(%name, %address, %reason, "self-check could not connect; the swap is not confirmed");
                    break;
                }
                Found::Mismatch { want, got } => {
                    crate::stats::bump(&crate::stats::STATS.self_check_failures);
                    let what =
                        format!("{address} serves serial {got} for {name}, the table holds {want}");
                    tracing::error!(%name, %address, served = %got, expected = %want, "self-check failed: clients do not get the certificate just swapped in");
                    events.record(
                        crate::events::EventKind::CertificateSelfCheckFailed,
                        name.as_str(),
                        what,
                    );
                    let Some(wait) = tries.next() else { break };
                    if let Some(site) = table.lookup(Some(name.as_str())) {
                        site.reinstall_cert();
                    }
                    tokio::time::sleep(*wait).await;
                }
            }
        }
    }
}

/// One handshake with `name` as SNI (a wildcard's `*` replaced by a label), compared with
/// what the table serves.
async fn check_name(
    table: &SiteTable,
    address: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    name: &HostName,
    expected: &str,
) -> Found {
    let sni = match name.as_str().strip_prefix("*.") {
        Some(base) => format!("onehttps-self-check.{base}"),
        None => name.as_str().to_owned(),
    };
    let current = table
        .lookup(Some(&sni))
        .and_then(|site| site.served_cert())
        .map(|cert| cert.bundle.info.serial.clone());
    if current.as_deref() != Some(expected) {
        return Found::Superseded;
    }
    let served = match crate::served_leaf::fetch(connector, address, &sni, CHECK_TIMEOUT).await {
        Ok(leaf) => x509_parser::parse_x509_certificate(&leaf)
            .map(|(_, cert)| cert.raw_serial_as_string())
            .map_err(|e| format!("the served certificate does not parse: {e}")),
        Err(e) => Err(e.to_string()),
    };
    match served {
        Ok(got) if got == expected => Found::Same,
        Ok(got) => Found::Mismatch {
            want: expected.to_owned(),
            got,
        },
        Err(reason) => Found::Unreachable(reason),
    }
}

/// A client that takes any certificate (it only reads the serial) but still checks the
/// handshake signature, so the server really holds the key of what it showed.
fn client_config() -> rustls::ClientConfig {
    crate::served_leaf::any_certificate_client(true)
}
