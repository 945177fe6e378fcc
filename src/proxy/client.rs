//! The HTTP/1.1 client to origins: a keep-alive pool (keyed by origin; the proxy keeps one
//! per connection worker), connect timeout, no proxy-side retries of its own. hyper-util's
//! "legacy" client lives behind this file only.

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::ProxyBody;
use super::connector::OriginConnector;
use crate::config::ProxySettings;

/// Most bytes buffered from one origin connection (hyper's minimum is 8 KiB).
const ORIGIN_READ_BUF_BYTES: usize = 64 * 1024;

/// A client to origins, with its pool of connections.
pub type OriginClient = Client<OriginConnector, ProxyBody>;

/// Error from the origin client.
pub type OriginError = hyper_util::client::legacy::Error;

/// A client (and its pool) over `connector`.
pub fn build(settings: &ProxySettings, connector: OriginConnector) -> OriginClient {
    builder(settings).build(connector)
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
