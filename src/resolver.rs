//! The DNS resolver every lookup of the edge makes (CNAME and TXT checks of onboarding, the
//! pre-flight's CAA and address lookups): hickory, asking only the configured nameservers,
//! without a cache.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// The resolver could not be built from the nameservers given.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the DNS resolver: {0}")]
pub struct ResolverError(hickory_resolver::net::NetError);

/// A resolver that asks only `nameservers` (UDP, then TCP), without caching, so a freshly
/// changed record is seen at the next check.
pub fn build(nameservers: &[SocketAddr]) -> Result<TokioResolver, ResolverError> {
    let servers = nameservers
        .iter()
        .map(|addr| {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
        })
        .collect();
    let mut options = ResolverOpts::default();
    options.cache_size = 0;
    options.attempts = 2;
    options.timeout = std::time::Duration::from_secs(3);
    TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(servers),
        TokioRuntimeProvider::default(),
    )
    .with_options(options)
    .build()
    .map_err(ResolverError)
}
