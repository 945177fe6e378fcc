//! The internal CA: a local root created on first start (its key sealed in the store like
//! every key), issuing short certificates for names no public CA can validate (`localhost`,
//! `*.localhost`, `*.test`, `*.internal`) and for the offline demo. `onehttps ca root` prints
//! the root to trust.

use futures_util::future::BoxFuture;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer as RcgenIssuer,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::{IssueError, Issued, Issuer, KeyType, keys};
use crate::certs::{HostName, Source};
use crate::store::{Store, StoreError};

/// Where the root lives in the store.
pub const ROOT_CERT: &str = "ca/root.pem";
const ROOT_KEY: &str = "ca/root.key.sealed";
/// Lifetime of the root.
const ROOT_DAYS: i64 = 3650;
/// Lifetime of the certificates it issues (renewed in their last third).
pub const LEAF_DAYS: i64 = 30;

/// Why the internal CA could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the internal CA in {path} is unusable: {reason}")]
    Invalid { path: String, reason: String },
}

/// The edge's own certificate authority.
pub struct InternalCa {
    issuer: RcgenIssuer<'static, KeyPair>,
    root_pem: String,
}

impl InternalCa {
    /// Loads the CA from `store`, creating it on first use.
    pub fn load_or_create(store: &Store) -> Result<Self, CaError> {
        let _lock = store.lock()?;
        let invalid = |reason: String| CaError::Invalid {
            path: store.dir().join("ca").display().to_string(),
            reason,
        };
        match (store.read_public(ROOT_CERT)?, store.read_secret(ROOT_KEY)?) {
            (Some(root_pem), Some(key_der)) => {
                let key = KeyPair::try_from(key_der.as_slice())
                    .map_err(|e| invalid(format!("root key: {e}")))?;
                let issuer = RcgenIssuer::from_ca_cert_pem(&root_pem, key)
                    .map_err(|e| invalid(format!("root certificate: {e}")))?;
                Ok(Self { issuer, root_pem })
            }
            (None, None) => Self::create(store),
            _ => Err(invalid(format!(
                "one of {ROOT_CERT} and {ROOT_KEY} is missing; remove the other to start a new CA"
            ))),
        }
    }

    fn create(store: &Store) -> Result<Self, CaError> {
        let fail = |e: rcgen::Error| CaError::Invalid {
            path: store.dir().join("ca").display().to_string(),
            reason: format!("cannot create the root: {e}"),
        };
        let key = KeyPair::generate().map_err(fail)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let id = crate::store::seal::to_hex(&key.public_key_raw()[1..5]);
        dn.push(DnType::CommonName, format!("onehttps internal CA {id}"));
        dn.push(DnType::OrganizationName, "onehttps");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(ROOT_DAYS);
        let root = params.self_signed(&key).map_err(fail)?;
        let root_pem = root.pem();
        // Key first: a root certificate without its key would be refused at the next start.
        store.write_secret(ROOT_KEY, &zeroize::Zeroizing::new(key.serialize_der()))?;
        store.write_public(ROOT_CERT, root_pem.as_bytes())?;
        tracing::info!(path = %store.dir().join(ROOT_CERT).display(), "internal CA created");
        Ok(Self {
            issuer: RcgenIssuer::new(params, key),
            root_pem,
        })
    }

    /// The root certificate, PEM: what clients trust.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Issues a certificate for `names` now (CPU only, no I/O).
    pub fn issue_now(&self, names: &[HostName], key_type: KeyType) -> Result<Issued, IssueError> {
        let key = keys::generate(key_type)?;
        let mut params = keys::params_for(names)?;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(LEAF_DAYS);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| IssueError::new(format!("internal CA cannot sign: {e}")))?;
        keys::verify(cert.pem(), &key, names)
    }
}

impl Issuer for InternalCa {
    fn source(&self) -> Source {
        Source::Internal
    }

    fn issue<'a>(
        &'a self,
        names: &'a [HostName],
        key_type: KeyType,
    ) -> BoxFuture<'a, Result<Issued, IssueError>> {
        Box::pin(async move { self.issue_now(names, key_type) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_reloaded_and_issues_verifiable_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ca = InternalCa::load_or_create(&store).unwrap();
        let again = InternalCa::load_or_create(&store).unwrap();
        assert_eq!(ca.root_pem(), again.root_pem());
        let names = vec![
            HostName::parse("shop.test").unwrap(),
            HostName::parse("*.shop.test").unwrap(),
        ];
        let issued = again.issue_now(&names, KeyType::EcdsaP256).unwrap();
        assert_eq!(issued.bundle.info.names, vec!["shop.test", "*.shop.test"]);
        let key_file = std::fs::read_to_string(dir.path().join(ROOT_KEY)).unwrap();
        assert!(!key_file.contains("PRIVATE KEY"));
    }
}
