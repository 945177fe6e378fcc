//! The persisted record of a managed certificate: its names, where it came from, its state in
//! the lifecycle, the chain in service and its sealed key, and the last failure. One record
//! per set of names; the store writes it atomically, so it is always whole.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};

use super::{CertInfo, HostName};

/// Where a certificate in the inventory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Obtained from an ACME CA.
    Acme,
    /// Issued by the edge's own local CA.
    Internal,
    /// PEM files given by the operator.
    Uploaded,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Acme => "acme",
            Self::Internal => "internal",
            Self::Uploaded => "uploaded",
        })
    }
}

/// Lifecycle state of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertState {
    /// An order is in flight; nothing issued yet for these names.
    Pending,
    /// Valid and outside its renewal window.
    Issued,
    /// Inside its renewal window and not yet renewed.
    Expiring,
    /// Past its notAfter.
    Expired,
    /// The last attempt failed; see the failure for why and when the next one is.
    Failed,
    /// Held back by the CA's limits (as counted here): see `queued` for which and until when.
    Queued,
    /// An uploaded certificate superseded by a managed one.
    Replaced,
}

impl std::fmt::Display for CertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pending => "pending",
            Self::Issued => "issued",
            Self::Expiring => "expiring",
            Self::Expired => "expired",
            Self::Failed => "failed",
            Self::Queued => "queued",
            Self::Replaced => "replaced",
        })
    }
}

/// The last failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub reason: String,
    /// Failures in a row.
    pub attempts: u32,
    /// Unix seconds of the next attempt.
    pub next_retry: u64,
}

/// An order held back by a CA limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// The limit's key in `[acme.limits]`.
    pub limit: String,
    pub reason: String,
    /// Unix seconds of the next attempt.
    pub next_attempt_at: u64,
}

/// An uploaded certificate that a managed one replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    pub serial: String,
    pub not_after: u64,
}

/// One managed certificate, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertRecord {
    pub names: Vec<String>,
    pub source: Source,
    pub state: CertState,
    /// PEM chain in service (leaf first); `None` while the first order is pending.
    pub chain_pem: Option<String>,
    /// The chain's private key, sealed under the master key; never plaintext.
    pub sealed_key: Option<String>,
    pub serial: Option<String>,
    pub not_before: Option<u64>,
    pub not_after: Option<u64>,
    pub failure: Option<Failure>,
    pub replaced: Option<Replaced>,
    /// Unix seconds of the last change.
    pub updated: u64,
    /// Why an earlier record for these names was set aside (failed authentication, a key
    /// that does not open or match), as the API shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<String>,
    /// Set while the CA's limits hold the next order back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<Queued>,
    /// Authentication tag over everything above, under the master key (the store sets and
    /// checks it: a record altered on disk is never loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
}

impl CertRecord {
    /// A record for `names` with no certificate yet.
    pub fn pending(names: &[HostName], source: Source) -> Self {
        Self {
            names: names.iter().map(|n| n.as_str().to_owned()).collect(),
            source,
            state: CertState::Pending,
            chain_pem: None,
            sealed_key: None,
            serial: None,
            not_before: None,
            not_after: None,
            failure: None,
            replaced: None,
            updated: unix(SystemTime::now()),
            recovered: None,
            queued: None,
            auth: None,
        }
    }

    /// Records a newly issued chain (the key sealed by the caller).
    pub fn set_issued(&mut self, chain_pem: String, sealed_key: String, info: &CertInfo) {
        self.chain_pem = Some(chain_pem);
        self.sealed_key = Some(sealed_key);
        self.serial = Some(info.serial.clone());
        self.not_before = Some(unix(info.not_before));
        self.not_after = Some(unix(info.not_after));
        self.enter(CertState::Issued);
        self.failure = None;
        self.queued = None;
        self.updated = unix(SystemTime::now());
    }

    /// An attempt failed: why, how many in a row, when the next one is. What is in service
    /// stays in the record (and in service).
    pub fn set_failed(&mut self, failure: Failure) {
        self.enter(CertState::Failed);
        self.queued = None;
        self.failure = Some(failure);
    }

    /// The CA's limits (as counted here) hold the next order until `queued.next_attempt_at`.
    pub fn set_queued(&mut self, queued: Queued) {
        self.enter(CertState::Queued);
        self.queued = Some(queued);
    }

    /// An order is about to be placed for names nothing is served for (a failure on
    /// record keeps its state: it says when the next attempt is).
    pub fn set_ordering(&mut self) {
        if self.failure.is_none() {
            self.enter(CertState::Pending);
        }
    }

    /// The certificate in service entered its renewal window (`expiring`) or ran out
    /// (`expired`), as its dates say.
    pub fn set_window_state(&mut self, state: CertState) {
        if matches!(state, CertState::Expiring | CertState::Expired) {
            self.enter(state);
        }
    }

    /// The one place a record's state changes (`replaced` is the inventory's word for an
    /// upload a managed certificate took over: never a record's state).
    fn enter(&mut self, to: CertState) {
        if may_enter(self.state, to) {
            self.state = to;
        } else {
            tracing::warn!(names = ?self.names, from = %self.state, %to, "refused a certificate state change the lifecycle does not allow");
        }
    }
}

/// Whether a stored record may go from `from` to `to`: an order may start, succeed, fail or
/// be held from any stored state (a renewal fails while the old certificate serves, a held
/// order is retried); a failed record stays failed until an attempt succeeds or is held,
/// whatever its dates say; `replaced` is never entered nor left.
pub fn may_enter(from: CertState, to: CertState) -> bool {
    use CertState::{Expired, Expiring, Failed, Issued, Pending, Queued, Replaced};
    match (from, to) {
        (Replaced, _) | (_, Replaced) => false,
        (Failed, Expiring | Expired) => false,
        (_, Pending | Issued | Failed | Queued | Expiring | Expired) => true,
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The id of the record for `names` (its key in the store, `certs/<id>.json`): the first
/// name, readable, plus a hash of all of them, so two sites sharing a first name never
/// collide. Stable: it is what every earlier version stored under.
pub fn id(names: &[HostName]) -> String {
    // Built by hand, without `format!` or a joined copy: a restart makes two million.
    let hash = match names {
        [one] => digest(&SHA256, one.as_str().as_bytes()),
        _ => {
            let mut sorted: Vec<&str> = names.iter().map(HostName::as_str).collect();
            sorted.sort_unstable();
            digest(&SHA256, sorted.join(",").as_bytes())
        }
    };
    let first = names.first().map_or("site", HostName::as_str);
    let mut id = String::with_capacity(first.len() + 13);
    id.extend(first.chars().map(|c| if c == '*' { '_' } else { c }));
    id.push('-');
    crate::seal::push_hex(&mut id, &hash.as_ref()[..6]);
    id
}

/// The instant `secs` after the Unix epoch.
pub fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<HostName> {
        list.iter().map(|n| HostName::parse(n).unwrap()).collect()
    }

    #[test]
    fn the_lifecycle_allows_what_the_renewal_loop_does_and_nothing_else() {
        use CertState::*;
        let all = [Pending, Issued, Expiring, Expired, Failed, Queued, Replaced];
        for from in all {
            for to in all {
                let refused = from == Replaced
                    || to == Replaced
                    || (from == Failed && matches!(to, Expiring | Expired));
                assert_eq!(may_enter(from, to), !refused, "{from} -> {to}");
            }
        }
        // The table the renewal loop relies on, spelled out.
        for (from, to, allowed) in [
            (Pending, Issued, true),
            (Pending, Failed, true),
            (Pending, Queued, true),
            (Issued, Issued, true),
            (Issued, Failed, true),
            (Failed, Issued, true),
            (Failed, Failed, true),
            (Queued, Pending, true),
            (Queued, Issued, true),
            (Issued, Expiring, true),
            (Expiring, Expired, true),
            (Expiring, Issued, true),
            (Failed, Expiring, false),
            (Issued, Replaced, false),
            (Replaced, Failed, false),
        ] {
            assert_eq!(may_enter(from, to), allowed, "{from} -> {to}");
        }
    }

    #[test]
    fn a_failure_keeps_the_chain_and_an_issue_clears_the_failure() {
        let names = [HostName::parse("a.test").unwrap()];
        let mut record = CertRecord::pending(&names, Source::Acme);
        record.chain_pem = Some("chain".into());
        record.set_queued(Queued {
            limit: "new_orders_per_3h".into(),
            reason: "held".into(),
            next_attempt_at: 9,
        });
        assert_eq!(record.state, CertState::Queued);
        record.set_failed(Failure {
            reason: "refused".into(),
            attempts: 1,
            next_retry: 10,
        });
        assert_eq!(record.state, CertState::Failed);
        assert!(record.queued.is_none() && record.chain_pem.is_some());
        record.set_ordering();
        assert_eq!(record.state, CertState::Failed, "a failure on record stays");
    }

    #[test]
    fn cert_ids_are_readable_stable_and_distinct() {
        let a = id(&names(&["shop.example.com", "example.com"]));
        let b = id(&names(&["shop.example.com"]));
        assert!(a.starts_with("shop.example.com-"), "{a}");
        assert_ne!(a, b);
        assert_eq!(a, id(&names(&["shop.example.com", "example.com"])));
        assert!(id(&names(&["*.example.com"])).starts_with("_.example.com-"));
    }

    #[test]
    fn cert_ids_stay_what_earlier_versions_stored() {
        // The id is a stored record's key: it must never change for the same names.
        for (list, stored) in [
            (&["shop.example.com"][..], "shop.example.com-951623a26f8b"),
            (
                &["shop.example.com", "example.com"][..],
                "shop.example.com-8a4cfccf0f33",
            ),
            (&["*.example.com"][..], "_.example.com-47287a8f16ec"),
        ] {
            assert_eq!(id(&names(list)), stored);
        }
    }
}
