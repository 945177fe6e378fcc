//! The reverse proxy: from a decrypted request to an origin and back. Header rewriting,
//! origin selection, the origin client (and its connectors: any address, public only for
//! tenants' origins, in memory for benchmarks),
//! error pages and the access log each have a file.

pub mod access_log;
pub mod client;
pub mod conn;
pub mod connector;
pub mod forward;
pub mod guard;
pub mod headers;
pub mod origins;
pub mod responses;
pub mod tunnel;
pub mod upload;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;

pub use conn::ClientConn;
pub use forward::Proxy;
pub use origins::OriginPool;

/// The body type on both sides of the proxy.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;
