//! TLS to etcd: the client's options from `[storage]`'s files, and failures explained in
//! words — which side's certificate is wrong and which setting to change — instead of
//! etcd-client's transport errors.

use super::StoreError;
use super::settings::EtcdSettings;

/// Why an etcd call failed, in words: a TLS failure says which side's certificate is wrong
/// and which setting to change; anything else is etcd-client's own message.
pub(super) fn describe(e: &etcd_client::Error) -> String {
    // etcd_client::Error names no source of its own: start from the error it wraps.
    let inner: Option<&(dyn std::error::Error + 'static)> = match e {
        etcd_client::Error::GRpcStatus(status) => Some(status),
        etcd_client::Error::TransportError(transport) => Some(transport),
        etcd_client::Error::IoError(io) => Some(io),
        _ => None,
    };
    if let Some(tls) = inner.and_then(tls_cause) {
        return explain_tls(&tls);
    }
    let text = e.to_string();
    // An alert read after the handshake reaches us as text only ("received fatal alert: X").
    let alert = text
        .split("received fatal alert: ")
        .nth(1)
        .and_then(|rest| rest.split(['"', ' ', ')']).next());
    match alert.and_then(|name| {
        CLIENT_CERTIFICATE_ALERTS
            .into_iter()
            .find(|a| format!("{a:?}") == name)
    }) {
        Some(alert) => client_certificate_refused(alert),
        None => text,
    }
}

/// The alerts an etcd member sends when it does not accept this node's client certificate.
const CLIENT_CERTIFICATE_ALERTS: [rustls::AlertDescription; 7] = [
    rustls::AlertDescription::CertificateRequired,
    rustls::AlertDescription::BadCertificate,
    rustls::AlertDescription::UnknownCA,
    rustls::AlertDescription::CertificateUnknown,
    rustls::AlertDescription::UnsupportedCertificate,
    rustls::AlertDescription::CertificateExpired,
    rustls::AlertDescription::AccessDenied,
];

fn client_certificate_refused(alert: rustls::AlertDescription) -> String {
    format!(
        "the etcd member refused this node's client certificate ({alert:?}): set storage.cert_file and storage.key_file to a certificate signed by the CA of etcd's --trusted-ca-file"
    )
}

/// The rustls error somewhere in `e`'s sources (also inside an `io::Error`, whose `source`
/// skips the error it wraps).
fn tls_cause(e: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut current = Some(e);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        if let Some(tls) = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.clone());
        }
        current = error.source();
    }
    None
}

fn explain_tls(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(why) => format!(
            "the etcd member's TLS certificate is not trusted ({why:?}): storage.ca_file must hold the CA that signed the members' certificates, and each endpoint's host must be a name or address in its member's certificate"
        ),
        rustls::Error::AlertReceived(alert) if CLIENT_CERTIFICATE_ALERTS.contains(alert) => {
            client_certificate_refused(*alert)
        }
        other => format!("TLS to etcd failed: {other}"),
    }
}

/// A TLS 1.3 server that wants a client certificate and gets none closes the connection
/// after the handshake (seen as a closed connection, a broken pipe or a reset, or as an
/// alert when it arrives first): when no `cert_file` is configured, say that this is the
/// likely cause.
pub(super) fn with_client_cert_hint(e: StoreError, settings: &EtcdSettings) -> StoreError {
    match e {
        StoreError::Unavailable { what, reason }
            if settings.tls.as_ref().is_some_and(|t| t.client.is_none())
                && ["connection closed", "broken pipe", "ConnectionReset"]
                    .iter()
                    .any(|closed| reason.contains(closed)) =>
        {
            StoreError::Unavailable {
                what,
                reason: format!(
                    "{reason} (an etcd started with --client-cert-auth closes connections without a client certificate: set storage.cert_file and storage.key_file)"
                ),
            }
        }
        other => other,
    }
}

/// TLS to the members: only `ca_pem` is trusted; the client certificate when configured.
pub(super) fn tls_options(tls: &super::settings::EtcdTls) -> etcd_client::TlsOptions {
    let mut options = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(&tls.ca_pem));
    if let Some(client) = &tls.client {
        options = options.identity(etcd_client::Identity::from_pem(
            &client.cert_pem,
            client.key_pem.as_slice(),
        ));
    }
    options
}
