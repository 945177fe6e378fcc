//! TLS termination: the certificate table, the certificate resolver, the rustls server
//! configuration and the ClientHello gate in front of the handshake.

pub mod accept;
pub mod resolver;
pub mod server_config;
pub mod table;

pub use accept::{HandshakeError, accept};
pub use resolver::TableResolver;
pub use table::{Routes, SiteTable};
