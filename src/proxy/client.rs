//! The HTTP/1.1 client to origins: one keep-alive pool for the whole process (keyed by
//! origin), connect timeout, no proxy-side retries of its own. hyper-util's "legacy" client
//! lives behind this file only.

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::ProxyBody;
use super::guard::PublicOnly;
use crate::config::ProxySettings;

/// Most bytes buffered from one origin connection (hyper's minimum is 8 KiB).
const ORIGIN_READ_BUF_BYTES: usize = 64 * 1024;

/// The shared origin client for configured sites (any address the operator wrote).
pub type OriginClient = Client<HttpConnector, ProxyBody>;
/// The client for API-registered sites' origins: public addresses only.
pub type TenantClient = Client<PublicOnly, ProxyBody>;

/// Error from the origin client.
pub type OriginError = hyper_util::client::legacy::Error;

pub fn build(settings: &ProxySettings) -> OriginClient {
    builder(settings).build(connector(settings.connect_timeout))
}

/// The client for tenants' origins: the same pool settings, and a connection whose peer
/// is not a public address is refused before anything is sent.
pub fn build_tenant(settings: &ProxySettings) -> TenantClient {
    builder(settings).build(PublicOnly::new(connector(settings.connect_timeout)))
}

fn builder(settings: &ProxySettings) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(settings.pool_idle_timeout)
        .pool_max_idle_per_host(settings.pool_max_idle_per_origin)
        // What is read ahead from an origin whose client is not reading: bounded, so a slow
        // reader pins little memory and the origin feels the backpressure.
        .http1_max_buf_size(ORIGIN_READ_BUF_BYTES)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new());
    builder
}

/// A plain HTTP connector with `connect_timeout` and `TCP_NODELAY`.
pub fn connector(connect_timeout: std::time::Duration) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    connector
}
