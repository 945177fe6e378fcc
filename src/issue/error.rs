//! Why an issuance failed, by cause: a CA's refusal (with its RFC 8555 problem type), one of
//! its rate limits, a CA out of reach, a validation that did not pass, the local model of its
//! limits, a pre-flight check, the store, or our own keys and certificates. Each variant's
//! `Display` is the sentence that goes into the site's status and events; the methods say
//! what the renewal loop and the ledger do next (wait, queue, count).

use std::time::Duration;

use super::KeyType;
use super::acme_http::AcmeClientError;
use super::challenges::AnswerCertError;
use super::preflight::PreflightError;
use super::shared_answers::ShareError;
use crate::certs::CertError;
use crate::store::StoreError;

/// A step of an ACME exchange, as its failures name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeStep {
    LoadAccount,
    CreateAccount,
    NewOrder,
    Authorization,
    Challenge,
    Validation,
    Finalize,
    Download,
}

impl AcmeStep {
    /// Whether a failure at this step leaves no order at the CA (so none of its limits
    /// counts it).
    pub fn before_order(self) -> bool {
        matches!(
            self,
            Self::LoadAccount | Self::CreateAccount | Self::NewOrder
        )
    }
}

impl std::fmt::Display for AcmeStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::LoadAccount => "cannot load the ACME account",
            Self::CreateAccount => "cannot create the ACME account",
            Self::NewOrder => "the CA refused the order",
            Self::Authorization => "cannot fetch an authorization",
            Self::Challenge => "the CA refused the challenge",
            Self::Validation => "validation did not complete",
            Self::Finalize => "the CA refused the CSR",
            Self::Download => "cannot download the certificate",
        })
    }
}

/// An order the local model of the CA's limits holds back (`limits.rs`): no request was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Unix seconds of the next attempt.
    pub until: u64,
    /// The limit's configuration key (`new_orders_per_3h`, ...).
    pub limit: String,
    pub reason: String,
}

/// Why an issuance failed.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The CA refused a step, or the exchange failed in a way it reported
    /// (`problem`: the RFC 8555 problem type, when it sent one).
    #[error("{step}: {detail}")]
    Ca {
        step: AcmeStep,
        problem: Option<String>,
        detail: String,
        /// The CA asked not to retry before this long (Retry-After).
        retry_after: Option<Duration>,
    },
    /// The CA refused because one of its rate limits was hit.
    #[error("{step}: {detail}")]
    RateLimited {
        step: AcmeStep,
        detail: String,
        retry_after: Duration,
    },
    /// The CA could not be talked to at all: `cause` says why in words an operator can act
    /// on.
    #[error("{step}: {cause}")]
    Unreachable { step: AcmeStep, cause: String },
    /// The CA could not validate the names (`invalid`: it counts against its
    /// failed-validation limit).
    #[error("the CA could not validate {names}: order is {status}")]
    NotValidated {
        names: String,
        status: String,
        invalid: bool,
    },
    /// An authorization in a state that cannot be validated.
    #[error("authorization is {status}, cannot validate")]
    Authorization { status: String },
    /// A wildcard name with DNS-01 not set up.
    #[error(
        "a wildcard name is validated over DNS-01 only: set [onboarding] acme_zone and delegate it to this edge"
    )]
    WildcardNeedsDns01,
    /// The CA offers none of the challenges this edge answers.
    #[error("the CA offers none of the configured challenges ({offered})")]
    NoUsableChallenge { offered: String },
    #[error("challenge disappeared")]
    ChallengeMissing,
    #[error("unsupported identifier {identifier}")]
    UnsupportedIdentifier { identifier: String },
    /// Not attempted: the CA's limits (as counted here) hold the order until then.
    #[error("queued: {}", .0.reason)]
    Held(Held),
    /// Not attempted and never will be as asked (a limit no wait satisfies).
    #[error("not ordered: {reason}")]
    Refused { reason: String },
    /// A pre-flight check found the order would fail; nothing was sent to the CA.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("the ACME order timed out")]
    TimedOut,
    #[error(transparent)]
    Share(#[from] ShareError),
    #[error(transparent)]
    AnswerCert(#[from] AnswerCertError),
    #[error(transparent)]
    Client(#[from] AcmeClientError),
    #[error("cannot read the ACME account: {0}")]
    ReadAccount(StoreError),
    #[error("stored ACME account is corrupt: {0}")]
    CorruptAccount(serde_json::Error),
    #[error("cannot encode the account: {0}")]
    EncodeAccount(serde_json::Error),
    #[error("cannot store the ACME account: {0}")]
    StoreAccount(StoreError),
    #[error("cannot generate a {key_type:?} key: {cause}")]
    Key {
        key_type: KeyType,
        cause: rcgen::Error,
    },
    #[error("cannot name the certificate: {0}")]
    Names(rcgen::Error),
    #[error("cannot make the CSR: {0}")]
    Csr(rcgen::Error),
    /// The certificate came back but cannot be served as it is.
    #[error("the issued certificate is unusable ({what}): {cause}")]
    Unusable {
        what: &'static str,
        cause: CertError,
    },
    #[error("the internal CA only issues for local names, not `{name}`")]
    NotLocal { name: String },
    #[error("internal CA cannot sign: {0}")]
    InternalSign(rcgen::Error),
}

impl IssueError {
    /// How long the CA asked not to be asked again (Retry-After, or a rate limit).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Ca { retry_after, .. } => *retry_after,
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether the CA refused because a rate limit was hit.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Self::RateLimited { .. })
    }

    /// The hold of the local limits model, when that is what stopped the order.
    pub fn held(&self) -> Option<&Held> {
        match self {
            Self::Held(held) => Some(held),
            _ => None,
        }
    }

    /// Whether it failed before the CA created an order (counts against none of its limits).
    pub fn not_placed(&self) -> bool {
        match self {
            Self::Ca { step, .. }
            | Self::RateLimited { step, .. }
            | Self::Unreachable { step, .. } => step.before_order(),
            Self::Preflight(_)
            | Self::Client(_)
            | Self::ReadAccount(_)
            | Self::CorruptAccount(_)
            | Self::EncodeAccount(_)
            | Self::StoreAccount(_) => true,
            _ => false,
        }
    }

    /// Whether the CA could not validate the names (its failed-validation limit counts it).
    pub fn failed_validation(&self) -> bool {
        matches!(self, Self::NotValidated { invalid: true, .. })
    }
}
