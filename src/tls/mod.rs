//! TLS termination: the certificate table, the cache of decoded signing keys, the certificate
//! resolver, the rustls server
//! configuration, the fleet's shared session ticket keys and the ClientHello gate in front
//! of the handshake.

pub mod accept;
pub mod resolver;
pub mod server_config;
pub mod table;
pub mod tickets;

pub use crate::certs::KeyCache;
pub use accept::{HandshakeError, accept};
pub use resolver::TableResolver;
pub use table::{Routes, SiteTable};
