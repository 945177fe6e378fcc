//! Issuers behind one small trait: ACME (`acme.rs`, any RFC 8555 CA) and the internal CA
//! (`internal.rs`, for names no public CA can validate). Keys and CSRs are made in-process
//! (`keys.rs`); every issued chain is verified against its key and names before it is
//! handed back. Challenge answers are shared with the listeners through `challenges.rs`, and
//! with the other nodes of a fleet through `shared_answers.rs`.

pub mod acme;
pub mod acme_http;
mod acme_problem;
pub mod caa;
pub mod challenges;
mod error;
pub mod internal;
pub mod keys;
pub mod ledger;
pub mod limits;
pub mod preflight;
pub mod probe;
mod registered_domain;
pub mod shared_answers;

use std::time::SystemTime;

use futures_util::future::BoxFuture;
use zeroize::Zeroizing;

pub use crate::certs::KeyType;
pub use crate::certs::local_names::{LOCAL_SUFFIXES, LocalNames, is_local_name};
use crate::certs::{CertBundle, HostName, Source};
pub use challenges::Challenges;
pub use error::{AcmeStep, Held, IssueError};

/// A certificate freshly issued and verified.
pub struct Issued {
    pub chain_pem: String,
    /// PKCS#8 DER of the private key; zeroized on drop, sealed before it is stored.
    pub key_der: Zeroizing<Vec<u8>>,
    pub bundle: CertBundle,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("bundle", &self.bundle)
            .finish_non_exhaustive()
    }
}

/// Something that turns a set of names into a certificate.
pub trait Issuer: Send + Sync {
    /// How certificates from this issuer are labelled in the inventory.
    fn source(&self) -> Source;

    /// Obtains a certificate for `names` with a new key of `key_type`; `renewal` when it
    /// replaces a certificate in service (those go first when a CA limit is near).
    fn issue<'a>(
        &'a self,
        names: &'a [HostName],
        key_type: KeyType,
        renewal: bool,
    ) -> BoxFuture<'a, Result<Issued, IssueError>>;

    /// The CA's suggested renewal window for a certificate it issued (ACME Renewal
    /// Information), when it offers one.
    fn suggested_window<'a>(
        &'a self,
        _chain_pem: &'a str,
    ) -> BoxFuture<'a, Option<(SystemTime, SystemTime)>> {
        Box::pin(async { None })
    }
}
