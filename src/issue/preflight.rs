//! Checks made before an ACME order, so that an order the CA would refuse costs no attempt
//! and the site owner learns what to change: CAA (`caa.rs`), where each name resolves (to
//! one of `onboarding.edge_addresses`, when they are listed), and the validation path
//! (`probe.rs`: a probe answer fetched through the name as the CA will). Each check asks
//! the public DNS (`acme.nameservers`); a resolver that does not answer at all lets the CA
//! decide rather than hold every order.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;

use super::caa::CaaError;
use super::probe::ProbeError;
use super::{Challenges, caa, probe};
use crate::certs::HostName;
use crate::config::{AcmeSettings, ChallengeKind};
use crate::store::Store;

/// Why an order would fail, found before it was placed (each a sentence a site owner can
/// act on).
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(transparent)]
    Caa(#[from] CaaError),
    #[error(
        "not ordered: {name} resolves to {elsewhere}, not to this edge ({}): the CA would validate it there — point {name} here (a CNAME to the site's target, or A/AAAA records to those addresses)",
        join(.edge_addresses)
    )]
    ResolvesElsewhere {
        name: HostName,
        elsewhere: IpAddr,
        edge_addresses: Vec<IpAddr>,
    },
    #[error(
        "not ordered: {name} does not resolve to any address (no A/AAAA record, no CNAME to one): point it at this edge first"
    )]
    NotResolving { name: HostName },
    #[error(
        "not ordered: {name} cannot be resolved ({cause}); the CA could not validate it either"
    )]
    Unresolvable { name: HostName, cause: NetError },
    #[error(transparent)]
    Path(#[from] ProbeError),
}

/// The pre-flight checks of one ACME directory.
pub(super) struct Preflight {
    resolver: Option<TokioResolver>,
    /// Where names must resolve (empty: anywhere).
    edge_addresses: Vec<IpAddr>,
    /// The validation path probed (the preferred challenge), `None` = not probed.
    path: Option<probe::Path>,
    store: Arc<Store>,
    challenges: Arc<Challenges>,
}

impl Preflight {
    pub(super) fn new(
        settings: &AcmeSettings,
        store: Arc<Store>,
        challenges: Arc<Challenges>,
    ) -> Self {
        let resolver = crate::resolver::build(&settings.nameservers)
            .map_err(|e| tracing::warn!(error = %e, "pre-flight checks are off"))
            .ok();
        let path = settings
            .challenges
            .first()
            .filter(|_| settings.probe)
            .and_then(|kind| match kind {
                ChallengeKind::Http01 => Some(probe::Path {
                    kind: probe::Via::Http01,
                    port: settings.http01_port,
                }),
                ChallengeKind::TlsAlpn01 => Some(probe::Path {
                    kind: probe::Via::TlsAlpn01,
                    port: settings.tls_alpn01_port,
                }),
                ChallengeKind::Dns01 => None,
            });
        Self {
            resolver,
            edge_addresses: settings.edge_addresses.clone(),
            path,
            store,
            challenges,
        }
    }

    /// Whether an order for `names` can succeed as far as can be told from here, with a CA
    /// named `identities` in CAA records (empty: unknown, CAA not checked); the reason if
    /// not.
    pub(super) async fn check(
        &self,
        names: &[HostName],
        identities: &[String],
    ) -> Result<(), PreflightError> {
        let Some(resolver) = &self.resolver else {
            return Ok(());
        };
        let identities: Vec<String> = identities
            .iter()
            .map(|i| i.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        for name in names {
            if !identities.is_empty() {
                caa::check(resolver, name, &identities).await?;
            }
            if name.is_wildcard() {
                continue;
            }
            let Some(addresses) = self.resolve(resolver, name).await? else {
                continue;
            };
            if let Some(elsewhere) = addresses
                .iter()
                .find(|ip| !self.edge_addresses.is_empty() && !self.edge_addresses.contains(ip))
            {
                return Err(PreflightError::ResolvesElsewhere {
                    name: name.clone(),
                    elsewhere: *elsewhere,
                    edge_addresses: self.edge_addresses.clone(),
                });
            }
            if let (Some(path), Some(first)) = (self.path, addresses.first()) {
                probe::probe(&self.store, &self.challenges, name.as_str(), *first, path).await?;
            }
        }
        Ok(())
    }

    /// The addresses `name` resolves to; `None` when the resolver does not answer.
    async fn resolve(
        &self,
        resolver: &TokioResolver,
        name: &HostName,
    ) -> Result<Option<Vec<IpAddr>>, PreflightError> {
        match resolver.lookup_ip(format!("{name}.")).await {
            Ok(lookup) => {
                let addresses: Vec<IpAddr> = lookup.iter().collect();
                if addresses.is_empty() {
                    Err(PreflightError::NotResolving { name: name.clone() })
                } else {
                    Ok(Some(addresses))
                }
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => {
                Err(PreflightError::NotResolving { name: name.clone() })
            }
            Err(
                e
                @ (NetError::Timeout | NetError::NoConnections | NetError::Io(_) | NetError::Busy),
            ) => {
                tracing::warn!(%name, error = %e, "cannot resolve for the pre-flight checks (is acme.nameservers reachable?); ordering anyway");
                Ok(None)
            }
            Err(cause) => Err(PreflightError::Unresolvable {
                name: name.clone(),
                cause,
            }),
        }
    }
}

fn join(addresses: &[IpAddr]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_resolver_that_does_not_answer_lets_the_ca_decide() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open_with(&crate::config::StorageSettings::Fs, dir.path()).unwrap());
        let mut settings = crate::config::Config::parse("", std::path::Path::new("/etc"))
            .unwrap()
            .acme;
        // Nothing listens on the discard port of loopback.
        settings.nameservers = vec!["127.0.0.1:9".parse().unwrap()];
        let preflight = Preflight::new(&settings, store, Arc::new(Challenges::default()));
        let resolver = preflight.resolver.as_ref().unwrap();
        let name = HostName::parse("shop.example.com").unwrap();
        let resolved = preflight.resolve(resolver, &name).await;
        assert!(matches!(resolved, Ok(None)), "{resolved:?}");
    }
}
