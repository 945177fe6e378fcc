//! The ACME issuer (RFC 8555) over instant-acme: one account per directory, created once and
//! stored sealed; one order per certificate for all its names; HTTP-01 or TLS-ALPN-01 answered
//! by the edge's own listeners (in the configured order of preference); key and CSR made
//! in-process; the chain verified before it is returned. ACME Renewal Information
//! (RFC 9773) is used when the directory offers it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};

use tokio::sync::Mutex;

use super::acme_http::AcmeClientError;
use super::acme_http::PacedClient;
use super::acme_problem::{ACCOUNT_DOES_NOT_EXIST, acme_error, is_problem, transport_cause};
use super::challenges::{ChallengeGuard, tls_alpn01_cert};
use super::ledger::Ledger;
use super::ledger::NotNow;
use super::limits::Outcome;
use super::preflight::Preflight;
use super::{AcmeStep, Challenges, Held, IssueError, Issued, Issuer, KeyType, keys};
use crate::certs::names::join;
use crate::certs::{HostName, Source};
use crate::config::{AcmeSettings, ChallengeKind};
use crate::store::Store;

/// How long one order may take from placing to the certificate (validation included).
const ORDER_TIMEOUT: Duration = Duration::from_secs(90);
/// An ACME CA and our account with it.
pub struct AcmeIssuer {
    settings: AcmeSettings,
    directory: String,
    store: Arc<Store>,
    challenges: Arc<Challenges>,
    account: Mutex<Option<Account>>,
    /// The orders placed with this CA, counted against its limits.
    ledger: Ledger,
    /// How the CA names itself in CAA records, once its directory said so.
    caa_identities: tokio::sync::OnceCell<Vec<String>>,
    /// Checks made before each order (CAA, resolution, the validation path).
    preflight: Preflight,
    /// The one paced HTTP client of this directory (or why it cannot be built).
    http: Result<PacedClient, AcmeClientError>,
}

impl AcmeIssuer {
    pub fn new(
        settings: AcmeSettings,
        directory: String,
        store: Arc<Store>,
        challenges: Arc<Challenges>,
    ) -> Self {
        let ledger = Ledger::new(store.clone(), &directory_id(&directory), settings.limits);
        let preflight = Preflight::new(&settings, store.clone(), challenges.clone());
        let http = PacedClient::new(
            settings.ca_roots.as_deref(),
            settings.limits.requests_per_second,
        );
        Self {
            settings,
            directory,
            store,
            challenges,
            account: Mutex::new(None),
            ledger,
            caa_identities: tokio::sync::OnceCell::new(),
            preflight,
            http,
        }
    }

    /// The directory's URL.
    pub fn directory(&self) -> &str {
        &self.directory
    }

    /// The orders counted against this CA's limits.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Where this directory's account credentials are kept.
    fn account_path(&self) -> String {
        format!("acme/account-{}.sealed", directory_id(&self.directory))
    }

    fn builder(&self) -> Result<instant_acme::AccountBuilder, IssueError> {
        let client = self.http.clone()?;
        Ok(Account::builder_with_http(Box::new(client)))
    }

    /// How this CA is named in CAA records: `acme.caa_identities`, else the directory's
    /// `caaIdentities` (asked once it answers), else `letsencrypt.org` for Let's Encrypt's
    /// directories, else unknown (empty).
    async fn caa_identities(&self) -> Vec<String> {
        if !self.settings.caa_identities.is_empty() {
            return self.settings.caa_identities.clone();
        }
        let fetched = self
            .caa_identities
            .get_or_try_init(|| self.directory_meta_caa())
            .await;
        match fetched {
            Ok(identities) => identities.clone(),
            Err(e) => {
                tracing::debug!(error = %e, "the directory's caaIdentities are unknown for now");
                fallback_caa_identities(&self.directory)
            }
        }
    }

    /// The directory's `meta.caaIdentities` (or the fallback when it has none).
    async fn directory_meta_caa(&self) -> Result<Vec<String>, DirectoryError> {
        use instant_acme::{BodyWrapper, HttpClient};
        let client = self.http.as_ref().map_err(Clone::clone)?;
        let request = http::Request::get(&self.directory)
            .body(BodyWrapper::default())
            .map_err(DirectoryError::Request)?;
        let mut response = client
            .request(request)
            .await
            .map_err(DirectoryError::Fetch)?;
        let body = response
            .body
            .into_bytes()
            .await
            .map_err(DirectoryError::Read)?;
        let directory: serde_json::Value =
            serde_json::from_slice(&body).map_err(DirectoryError::NotJson)?;
        let listed: Vec<String> = directory["meta"]["caaIdentities"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(if listed.is_empty() {
            fallback_caa_identities(&self.directory)
        } else {
            listed
        })
    }

    /// Places an order for `names` if the CA's limits (as counted in the ledger) let it
    /// through, records how it ended, and otherwise says until when it is held.
    async fn order_within_limits(
        &self,
        names: &[HostName],
        key_type: KeyType,
        renewal: bool,
    ) -> Result<Issued, IssueError> {
        let listed: Vec<String> = names.iter().map(|n| n.as_str().to_owned()).collect();
        let id = crate::certs::record::id(names);
        // The CA's limits first (cheap, local), then the pre-flight checks (DNS, a probe).
        let placed = match self.ledger.admit(&id, &listed, renewal).await {
            Ok(placed) => placed,
            Err(NotNow::Never { reason }) => {
                return Err(IssueError::Refused { reason });
            }
            Err(NotNow::Wait {
                until,
                limit,
                reason,
            }) => {
                return Err(IssueError::Held(Held {
                    until,
                    limit: limit.key().to_owned(),
                    reason,
                }));
            }
        };
        // An order the CA would refuse is not placed (and counts for nothing).
        let identities = self.caa_identities().await;
        if let Err(reason) = self.preflight.check(names, &identities).await {
            self.ledger.finish(placed, Outcome::NotPlaced).await;
            return Err(reason.into());
        }
        let result = tokio::time::timeout(ORDER_TIMEOUT * 2, self.order(names, key_type))
            .await
            .unwrap_or(Err(IssueError::TimedOut));
        let outcome = match &result {
            Ok(_) => Outcome::Issued,
            Err(e) if e.not_placed() => Outcome::NotPlaced,
            Err(e) if e.failed_validation() => Outcome::FailedValidation,
            Err(_) => Outcome::Failed,
        };
        self.ledger.finish(placed, outcome).await;
        result
    }

    /// The account, from the store or created at the CA (once) and stored sealed.
    async fn account(&self) -> Result<Account, IssueError> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let path = self.account_path();
        let stored = self
            .store
            .read_secret(&path)
            .map_err(IssueError::ReadAccount)?;
        let account = match stored {
            Some(json) => {
                let credentials: AccountCredentials =
                    serde_json::from_slice(&json).map_err(IssueError::CorruptAccount)?;
                self.builder()?
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| self.acme_error(AcmeStep::LoadAccount, e))?
            }
            None => {
                let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
                let eab = self
                    .settings
                    .eab
                    .as_ref()
                    .map(|(kid, key)| ExternalAccountKey::new(kid.clone(), key));
                let (account, credentials) = self
                    .builder()?
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.directory.clone(),
                        eab.as_ref(),
                    )
                    .await
                    .map_err(|e| self.acme_error(AcmeStep::CreateAccount, e))?;
                let json = zeroize::Zeroizing::new(
                    serde_json::to_vec(&credentials).map_err(IssueError::EncodeAccount)?,
                );
                self.store
                    .write_secret(&path, &json)
                    .map_err(IssueError::StoreAccount)?;
                tracing::info!(directory = %self.directory, account = account.id(), "ACME account created");
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    async fn forget_account(&self) {
        *self.account.lock().await = None;
        if let Err(e) = self.store.remove(&self.account_path()) {
            tracing::warn!(error = %e, "cannot remove the stale ACME account");
        }
        tracing::warn!(directory = %self.directory, "the CA does not know our account; a new one will be created");
    }

    async fn order(&self, names: &[HostName], key_type: KeyType) -> Result<Issued, IssueError> {
        let identifiers: Vec<Identifier> = names
            .iter()
            .map(|n| Identifier::Dns(n.as_str().to_owned()))
            .collect();
        let mut registered_again = false;
        let mut order = loop {
            // Until the CA created the order, nothing counts against its limits.
            let account = self.account().await?;
            match account.new_order(&NewOrder::new(&identifiers)).await {
                Ok(order) => break order,
                // The CA lost our account (a reset CA, a deactivation): register a new one
                // and order again at once, rather than fail and back off.
                Err(e) if is_problem(&e, ACCOUNT_DOES_NOT_EXIST) && !registered_again => {
                    self.forget_account().await;
                    registered_again = true;
                }
                Err(e) => {
                    return Err(self.acme_error(AcmeStep::NewOrder, e));
                }
            }
        };
        tracing::info!(names = %join(names), order = order.url(), "ACME order placed");

        // Answers stay published until the order is done, then the guards remove them.
        let mut guards: Vec<ChallengeGuard> = Vec::new();
        let mut shared_guards = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| self.acme_error(AcmeStep::Authorization, e))?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(IssueError::Authorization {
                        status: format!("{other:?}"),
                    });
                }
            }
            let offered: Vec<ChallengeType> =
                authz.challenges.iter().map(|c| c.r#type.clone()).collect();
            // A wildcard is validated over DNS-01 only; other names prefer the configured
            // challenges, DNS-01 last.
            let wildcard = authz.identifier().wildcard;
            let dns01 = self.settings.dns01.then_some(ChallengeKind::Dns01);
            let mut usable: Vec<ChallengeKind> = if wildcard {
                Vec::new()
            } else {
                self.settings.challenges.clone()
            };
            usable.extend(dns01);
            let Some(kind) = usable
                .into_iter()
                .find(|k| offered.contains(&challenge_type(*k)))
            else {
                return Err(if wildcard && !self.settings.dns01 {
                    IssueError::WildcardNeedsDns01
                } else {
                    IssueError::NoUsableChallenge {
                        offered: format!("{offered:?}"),
                    }
                });
            };
            let mut challenge = authz
                .challenge(challenge_type(kind))
                .ok_or(IssueError::ChallengeMissing)?;
            let name = match challenge.identifier().identifier {
                Identifier::Dns(name) => name.clone(),
                other => {
                    return Err(IssueError::UnsupportedIdentifier {
                        identifier: format!("{other:?}"),
                    });
                }
            };
            let key_authorization = challenge.key_authorization();
            // What the answer carries: the key authorization, or for DNS-01 its TXT value.
            let answer = match kind {
                ChallengeKind::Dns01 => key_authorization.dns_value(),
                _ => key_authorization.as_str().to_owned(),
            };
            let shared =
                super::shared_answers::share(&self.store, kind, &name, &challenge.token, &answer)
                    .await?;
            shared_guards.extend(shared);
            guards.push(match kind {
                ChallengeKind::Http01 => self.challenges.add_http01(
                    name.clone(),
                    challenge.token.clone(),
                    key_authorization.as_str().to_owned(),
                ),
                ChallengeKind::TlsAlpn01 => {
                    let cert = tls_alpn01_cert(&name, key_authorization.digest().as_ref())?;
                    self.challenges.add_tls_alpn01(name.clone(), cert)
                }
                ChallengeKind::Dns01 => {
                    self.challenges
                        .add_dns01(name.clone(), challenge.token.clone(), answer.clone())
                }
            });
            challenge
                .set_ready()
                .await
                .map_err(|e| self.acme_error(AcmeStep::Challenge, e))?;
            tracing::debug!(%name, challenge = ?kind, "challenge ready");
        }

        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(ORDER_TIMEOUT);
        let status = order
            .poll_ready(&retries)
            .await
            .map_err(|e| self.acme_error(AcmeStep::Validation, e))?;
        drop(guards);
        if status != OrderStatus::Ready {
            return Err(IssueError::NotValidated {
                names: join(names),
                status: format!("{status:?}"),
                invalid: status == OrderStatus::Invalid,
            });
        }
        let key = keys::generate(key_type)?;
        order
            .finalize_csr(&keys::csr(names, &key)?)
            .await
            .map_err(|e| self.acme_error(AcmeStep::Finalize, e))?;
        let chain_pem = order
            .poll_certificate(&retries)
            .await
            .map_err(|e| self.acme_error(AcmeStep::Download, e))?;
        keys::verify(chain_pem, &key, names)
    }
}

impl Issuer for AcmeIssuer {
    fn source(&self) -> Source {
        Source::Acme
    }

    fn issue<'a>(
        &'a self,
        names: &'a [HostName],
        key_type: KeyType,
        renewal: bool,
    ) -> BoxFuture<'a, Result<Issued, IssueError>> {
        Box::pin(self.order_within_limits(names, key_type, renewal))
    }

    fn suggested_window<'a>(
        &'a self,
        chain_pem: &'a str,
    ) -> BoxFuture<'a, Option<(SystemTime, SystemTime)>> {
        Box::pin(async move {
            let account = self.account().await.ok()?;
            let leaf = rustls_pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .next()?
                .ok()?;
            let id = instant_acme::CertificateIdentifier::try_from(&leaf).ok()?;
            match account.renewal_info(&id).await {
                Ok((info, _)) => {
                    let window = info.suggested_window;
                    Some((window.start.into(), window.end.into()))
                }
                Err(instant_acme::Error::Unsupported(_)) => None,
                Err(e) => {
                    tracing::debug!(error = %e, "ACME renewal information unavailable");
                    None
                }
            }
        })
    }
}

use rustls_pki_types::pem::PemObject;

fn challenge_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        ChallengeKind::Dns01 => ChallengeType::Dns01,
    }
}

impl AcmeIssuer {
    /// An instant-acme error with context, rate limits and Retry-After recognised, and a
    /// CA that could not be talked to at all said in words an operator can act on.
    fn acme_error(&self, step: AcmeStep, e: instant_acme::Error) -> IssueError {
        match transport_cause(&e, &self.directory) {
            Some(cause) => IssueError::Unreachable { step, cause },
            None => acme_error(step, &e),
        }
    }
}

/// Why the directory object could not be read.
#[derive(Debug, thiserror::Error)]
enum DirectoryError {
    #[error(transparent)]
    Client(#[from] AcmeClientError),
    #[error("cannot ask for the directory: {0}")]
    Request(http::Error),
    #[error("cannot fetch the directory: {0}")]
    Fetch(instant_acme::Error),
    #[error("cannot read the directory: {0}")]
    Read(Box<dyn std::error::Error + Send + Sync>),
    #[error("the directory is not JSON: {0}")]
    NotJson(serde_json::Error),
}

/// `letsencrypt.org` for Let's Encrypt's directories; nothing known for any other.
fn fallback_caa_identities(directory: &str) -> Vec<String> {
    if super::limits::CaLimits::default_for(directory) == super::limits::CaLimits::LETS_ENCRYPT {
        vec!["letsencrypt.org".to_owned()]
    } else {
        Vec::new()
    }
}

/// A short, stable id of a directory URL (names its account and ledger in the store).
fn directory_id(directory: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, directory.as_bytes());
    crate::seal::to_hex(&digest.as_ref()[..8])
}
