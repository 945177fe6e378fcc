//! The internal CA: a local root created on first start (its key sealed in the store like
//! every key), issuing short certificates for names no public CA can validate (`localhost`,
//! `*.localhost`, `*.test`, `*.internal`) and for the offline demo. `onehttps ca root` prints
//! the root to trust. The root is name-constrained (RFC 5280 §4.2.1.10) to those local names
//! and no IP address, so trusting it cannot let it vouch for any public site; a root made
//! before the constraint is replaced at start, with a warning to trust the new one.

use futures_util::future::BoxFuture;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, GeneralSubtree,
    IsCa, Issuer as RcgenIssuer, KeyPair, KeyUsagePurpose, NameConstraints,
};
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

use super::{IssueError, Issued, Issuer, KeyType, LocalNames, keys};
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
    /// What the root is constrained to, and so all it issues for.
    names: LocalNames,
}

impl InternalCa {
    /// Loads the CA from `store`, creating it on first use; a root constrained to other
    /// names than `names` (or to none) is replaced.
    pub fn load_or_create(store: &Store, names: &LocalNames) -> Result<Self, CaError> {
        let _lock = store.lock()?;
        let invalid = |reason: String| CaError::Invalid {
            path: store.path_of("ca").display().to_string(),
            reason,
        };
        match (store.read_public(ROOT_CERT)?, store.read_secret(ROOT_KEY)?) {
            (Some(root_pem), Some(_))
                if permitted_names(&root_pem).as_ref() != Some(&names.suffixes()) =>
            {
                tracing::warn!(
                    path = %store.path_of(ROOT_CERT).display(),
                    names = %names.suffixes().join(", "),
                    "the internal CA's root is not limited to the configured local names: \
                     replaced by one that is; trust the new one (onehttps ca root) and remove \
                     the old one from every trust store"
                );
                Self::create(store, names)
            }
            (Some(root_pem), Some(key_der)) => {
                let key = KeyPair::try_from(key_der.as_slice())
                    .map_err(|e| invalid(format!("root key: {e}")))?;
                let issuer = RcgenIssuer::from_ca_cert_pem(&root_pem, key)
                    .map_err(|e| invalid(format!("root certificate: {e}")))?;
                Ok(Self {
                    issuer,
                    root_pem,
                    names: names.clone(),
                })
            }
            (None, None) => Self::create(store, names),
            _ => Err(invalid(format!(
                "one of {ROOT_CERT} and {ROOT_KEY} is missing; remove the other to start a new CA"
            ))),
        }
    }

    fn create(store: &Store, names: &LocalNames) -> Result<Self, CaError> {
        let fail = |e: rcgen::Error| CaError::Invalid {
            path: store.path_of("ca").display().to_string(),
            reason: format!("cannot create the root: {e}"),
        };
        let key = KeyPair::generate().map_err(fail)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let id = crate::seal::to_hex(&key.public_key_raw()[1..5]);
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
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: names
                .suffixes()
                .into_iter()
                .map(GeneralSubtree::DnsName)
                .collect(),
            excluded_subtrees: vec![
                GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
                GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
            ],
        });
        let root = params.self_signed(&key).map_err(fail)?;
        let root_pem = root.pem();
        // Key first: a root certificate without its key would be refused at the next start.
        store.write_secret(ROOT_KEY, &zeroize::Zeroizing::new(key.serialize_der()))?;
        store.write_public(ROOT_CERT, root_pem.as_bytes())?;
        tracing::info!(path = %store.path_of(ROOT_CERT).display(), "internal CA created");
        Ok(Self {
            issuer: RcgenIssuer::new(params, key),
            root_pem,
            names: names.clone(),
        })
    }

    /// The root certificate, PEM: what clients trust.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Whether `leaf` (DER) was issued by this root (its issuer is this root's subject).
    pub fn issued(&self, leaf: &[u8]) -> bool {
        let root = rustls_pki_types::CertificateDer::from_pem_slice(self.root_pem.as_bytes());
        let (Ok(root), Ok((_, leaf))) = (root, x509_parser::parse_x509_certificate(leaf)) else {
            return false;
        };
        x509_parser::parse_x509_certificate(&root)
            .is_ok_and(|(_, root)| root.subject().as_raw() == leaf.issuer().as_raw())
    }

    /// Issues a certificate for `names` now (CPU only, no I/O). Only local names: the root
    /// is constrained to them, so anything else would not verify anyway.
    pub fn issue_now(&self, names: &[HostName], key_type: KeyType) -> Result<Issued, IssueError> {
        if let Some(public) = names.iter().find(|n| !self.names.contains(n)) {
            return Err(IssueError::NotLocal {
                name: public.to_string(),
            });
        }
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
            .map_err(IssueError::InternalSign)?;
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
        _renewal: bool,
    ) -> BoxFuture<'a, Result<Issued, IssueError>> {
        Box::pin(async move { self.issue_now(names, key_type) })
    }
}

/// The DNS names a root certificate (PEM) is constrained to, in order; `None` without a
/// name constraints extension.
fn permitted_names(root_pem: &str) -> Option<Vec<String>> {
    let der = rustls_pki_types::CertificateDer::from_pem_slice(root_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let constraints = cert.name_constraints().ok()??;
    let permitted = constraints.value.permitted_subtrees.as_ref()?;
    Some(
        permitted
            .iter()
            .filter_map(|subtree| match &subtree.base {
                x509_parser::extensions::GeneralName::DNSName(name) => Some((*name).to_owned()),
                _ => None,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_reloaded_and_issues_verifiable_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ca = InternalCa::load_or_create(&store, &LocalNames::default()).unwrap();
        let again = InternalCa::load_or_create(&store, &LocalNames::default()).unwrap();
        assert_eq!(ca.root_pem(), again.root_pem());
        let names = vec![
            HostName::parse("shop.test").unwrap(),
            HostName::parse("*.shop.test").unwrap(),
        ];
        let issued = again.issue_now(&names, KeyType::EcdsaP256).unwrap();
        assert_eq!(issued.bundle.info.names, vec!["shop.test", "*.shop.test"]);
        let key_file = std::fs::read_to_string(dir.path().join(ROOT_KEY)).unwrap();
        assert!(!key_file.contains("PRIVATE KEY"));
        assert_eq!(
            permitted_names(ca.root_pem()),
            Some(LocalNames::default().suffixes())
        );
        assert!(ca.issued(&issued.bundle.chain.leaf()));
        let public = vec![HostName::parse("www.example.com").unwrap()];
        assert!(again.issue_now(&public, KeyType::EcdsaP256).is_err());
    }

    #[test]
    fn an_unconstrained_root_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let old = params.self_signed(&key).unwrap();
        store
            .write_secret(ROOT_KEY, &zeroize::Zeroizing::new(key.serialize_der()))
            .unwrap();
        store.write_public(ROOT_CERT, old.pem().as_bytes()).unwrap();
        let ca = InternalCa::load_or_create(&store, &LocalNames::default()).unwrap();
        assert_ne!(ca.root_pem(), old.pem());
        assert_eq!(
            permitted_names(ca.root_pem()),
            Some(LocalNames::default().suffixes())
        );
        let again = InternalCa::load_or_create(&store, &LocalNames::default()).unwrap();
        assert_eq!(again.root_pem(), ca.root_pem(), "replaced once, then kept");
        // Configured extra names: the root is replaced by one that covers them too.
        let corp = LocalNames::new(vec!["corp".into()]);
        let widened = InternalCa::load_or_create(&store, &corp).unwrap();
        assert_ne!(widened.root_pem(), ca.root_pem());
        let wiki = vec![HostName::parse("wiki.corp").unwrap()];
        assert!(widened.issue_now(&wiki, KeyType::EcdsaP256).is_ok());
        assert!(again.issue_now(&wiki, KeyType::EcdsaP256).is_err());
    }
}
