//! The certificate model: host names and their matching rules, PEM bundles and their
//! validation. Pure code: no I/O beyond what a caller hands in, heavily unit-tested.

pub mod bundle;
pub mod names;
pub mod selfsigned;

pub use bundle::{CertBundle, CertError, CertInfo};
pub use names::{HostName, HostNameError};
