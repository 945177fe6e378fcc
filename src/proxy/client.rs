//! The HTTP/1.1 client to origins: one keep-alive pool for the whole process (keyed by
//! origin), connect timeout, no proxy-side retries of its own. hyper-util's "legacy" client
//! lives behind this file only.

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::ProxyBody;
use crate::config::ProxySettings;

/// The shared origin client.
pub type OriginClient = Client<HttpConnector, ProxyBody>;

/// Error from the origin client.
pub type OriginError = hyper_util::client::legacy::Error;

pub fn build(settings: &ProxySettings) -> OriginClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(settings.connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(settings.pool_idle_timeout)
        .pool_max_idle_per_host(settings.pool_max_idle_per_origin)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}
