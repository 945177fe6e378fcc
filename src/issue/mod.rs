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

use crate::certs::{CertBundle, HostName, Source};
pub use challenges::Challenges;
pub use error::{AcmeStep, Held, IssueError};
pub use keys::KeyType;

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

/// The top-level names no public CA validates; the internal CA's root is name-constrained
/// to these and to the operator's `[internal_ca] names`.
pub const LOCAL_SUFFIXES: [&str; 5] = ["localhost", "test", "internal", "local", "invalid"];

/// Whether no public CA could ever validate `name` (one of [`LOCAL_SUFFIXES`] or under it).
pub fn is_local_name(name: &HostName) -> bool {
    let last = name.as_str().rsplit('.').next().unwrap_or_default();
    LOCAL_SUFFIXES.contains(&last)
}

/// The names the internal CA serves: [`LOCAL_SUFFIXES`] and the operator's extra suffixes
/// (`[internal_ca] names`, e.g. `corp` or `home.arpa`), each with every name under it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalNames {
    extra: Vec<String>,
}

impl LocalNames {
    pub fn new(extra: Vec<String>) -> Self {
        Self { extra }
    }

    /// Every suffix, built-in first: what the root is name-constrained to.
    pub fn suffixes(&self) -> Vec<String> {
        let mut all: Vec<String> = LOCAL_SUFFIXES.iter().map(|s| (*s).to_owned()).collect();
        all.extend(self.extra.iter().cloned());
        all
    }

    /// Whether `name` is a suffix or lies under one (`*.a.corp` under `corp`).
    pub fn contains(&self, name: &HostName) -> bool {
        let name = name.as_str().trim_start_matches("*.");
        LOCAL_SUFFIXES.iter().any(|s| under(name, s)) || self.extra.iter().any(|s| under(name, s))
    }
}

/// `name` is `suffix` or ends with `.suffix`.
fn under(name: &str, suffix: &str) -> bool {
    name == suffix
        || name
            .strip_suffix(suffix)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names() {
        let local = |n: &str| is_local_name(&HostName::parse(n).unwrap());
        assert!(local("localhost"));
        assert!(local("demo.localhost"));
        assert!(local("*.shop.test"));
        assert!(local("db.internal"));
        assert!(!local("example.com"));
        assert!(!local("test.example.com"));
        let names = LocalNames::new(vec!["corp".into(), "home.arpa".into()]);
        let has = |n: &str| names.contains(&HostName::parse(n).unwrap());
        assert!(has("shop.test") && has("*.shop.test") && has("localhost"));
        assert!(has("wiki.corp") && has("nas.home.arpa") && has("*.x.corp"));
        assert!(!has("example.com") && !has("arpa") && !has("xcorp"));
    }
}
