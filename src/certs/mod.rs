//! The certificate model: host names and their matching rules, PEM bundles and their
//! validation, the persisted record and its states, renewal timing, and the certificate in
//! service with its key cache (`served`). Pure code: no I/O beyond what a caller hands in,
//! heavily unit-tested.

pub mod bundle;
pub mod chain;
pub mod key_type;
pub mod local_names;
pub mod names;
pub mod record;
pub mod sealed_key;
#[cfg(test)]
pub mod selfsigned;
pub mod served;
pub mod window;

pub use bundle::{CertBundle, CertError, CertInfo};
pub use chain::Chain;
pub use key_type::KeyType;
pub use names::{HostName, HostNameError};
pub use record::{CertRecord, CertState, Source};
pub use sealed_key::{PlainKey, SealedKey};
pub use served::{KeyCache, ServedCert};
