//! A local model of an ACME CA's published rate limits, and the decision taken before every
//! order: place it now, wait until a limit frees up (with the moment), or never (with the
//! reason). Pure logic over the ledger of past attempts (`ledger.rs` keeps it in the store);
//! Let's Encrypt's published limits are the default for its directories.

use std::time::Duration;

use serde::Serialize;

pub use crate::config::CaLimits;

use super::registered_domain::registered_domain;

const HOUR: u64 = 3600;
const WEEK: u64 = 7 * 24 * HOUR;

impl CaLimits {
    /// The limits that count past attempts, with their windows: what `GET /api/v1/ca` and
    /// `/metrics` show.
    pub fn windows(&self) -> [(Limit, Option<u32>); 4] {
        [
            (Limit::NewOrders, self.new_orders_per_3h),
            (
                Limit::CertificatesPerDomain,
                self.certificates_per_domain_per_week,
            ),
            (Limit::Duplicates, self.duplicates_per_week),
            (Limit::FailedValidations, self.failed_validations_per_hour),
        ]
    }
}

/// One of the counted limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    NewOrders,
    CertificatesPerDomain,
    Duplicates,
    FailedValidations,
}

impl Limit {
    /// The configuration key (`[acme.limits]`), which is also its name in the API.
    pub fn key(self) -> &'static str {
        match self {
            Self::NewOrders => "new_orders_per_3h",
            Self::CertificatesPerDomain => "certificates_per_domain_per_week",
            Self::Duplicates => "duplicates_per_week",
            Self::FailedValidations => "failed_validations_per_hour",
        }
    }

    pub fn window(self) -> Duration {
        Duration::from_secs(match self {
            Self::NewOrders => 3 * HOUR,
            Self::CertificatesPerDomain | Self::Duplicates => WEEK,
            Self::FailedValidations => HOUR,
        })
    }

    /// Which past attempts this limit counts.
    fn counts(self, attempt: &Attempt) -> bool {
        match self {
            Self::NewOrders => attempt.outcome != Outcome::NotPlaced,
            Self::CertificatesPerDomain | Self::Duplicates => attempt.outcome == Outcome::Issued,
            Self::FailedValidations => attempt.outcome == Outcome::FailedValidation,
        }
    }

    /// Whether an attempt for `names` counts under `key` — what `keys(names).contains(key)`
    /// says, without working out every key (a decision runs over a week of orders: tens of
    /// thousands at Let's Encrypt's limits).
    fn counts_under(self, names: &[String], key: &str) -> bool {
        match self {
            Self::NewOrders => true,
            Self::CertificatesPerDomain => names.iter().any(|name| {
                let name = name.trim_start_matches("*.");
                // Only a name equal to the domain or under it can have it as its registered
                // domain: the Public Suffix List is consulted for those alone.
                let under = name == key
                    || (name.len() > key.len()
                        && name.ends_with(key)
                        && name.as_bytes()[name.len() - key.len() - 1] == b'.');
                under && registered_domain(name) == key
            }),
            Self::Duplicates => names.len() >= key.split(',').count() && exact_set(names) == key,
            Self::FailedValidations => names.iter().any(|n| n == key),
        }
    }

    /// The keys an attempt for `names` counts under: the account, each registered domain,
    /// the exact set, each name.
    fn keys(self, names: &[String]) -> Vec<String> {
        match self {
            Self::NewOrders => vec![String::new()],
            Self::CertificatesPerDomain => {
                let mut domains: Vec<String> = names.iter().map(|n| registered_domain(n)).collect();
                domains.sort_unstable();
                domains.dedup();
                domains
            }
            Self::Duplicates => vec![exact_set(names)],
            Self::FailedValidations => names.to_vec(),
        }
    }
}

/// The names of a certificate as one key, independent of their order.
fn exact_set(names: &[String]) -> String {
    let mut sorted: Vec<&str> = names.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.join(",")
}

/// How an attempt ended (or `Placed`, while it runs or if its node died during it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Placed,
    Issued,
    /// The CA could not validate the names.
    FailedValidation,
    /// Failed for another reason after the order was placed.
    Failed,
    /// Failed before the CA took the order (it was unreachable): counts for nothing.
    NotPlaced,
}

/// One order, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Attempt {
    /// Unix seconds when it was placed.
    pub at: u64,
    pub names: Vec<String>,
    pub outcome: Outcome,
    /// A renewal of a certificate in service (goes before new sites).
    #[serde(default)]
    pub renewal: bool,
}

/// What to do with an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Now,
    /// Not before `until` (Unix seconds): `limit` holds it.
    Wait {
        until: u64,
        limit: Limit,
        reason: String,
    },
    /// This order can never be placed as it is.
    Never {
        reason: String,
    },
}

/// How long a new site waits when the renewals waiting for the same limit take all of it.
const RENEWALS_FIRST_WAIT: u64 = 60;

/// Whether an order for `names` may be placed at `now` (Unix seconds) given the `attempts`
/// in the ledger. A new certificate (not a `renewal`) leaves `renewals_waiting` orders of
/// the account's budget to the renewals queued behind a limit: renewals go first.
pub fn decide(
    limits: &CaLimits,
    attempts: &[Attempt],
    names: &[String],
    renewal: bool,
    renewals_waiting: u32,
    now: u64,
) -> Decision {
    if let Some(max) = limits.names_per_certificate
        && names.len() > max as usize
    {
        return Decision::Never {
            reason: format!(
                "{} names in one certificate, the CA allows at most {max} (acme.limits.names_per_certificate): split the site",
                names.len()
            ),
        };
    }
    let mut latest: Option<Decision> = None;
    for (limit, max) in limits.windows() {
        let Some(max) = max else { continue };
        let reserved = if renewal || limit != Limit::NewOrders {
            0
        } else {
            renewals_waiting
        };
        if let Some(wait) = wait_for(limit, max, reserved, attempts, names, now)
            && latest
                .as_ref()
                .is_none_or(|d| matches!(d, Decision::Wait { until, .. } if wait.0 > *until))
        {
            let (until, reason) = wait;
            latest = Some(Decision::Wait {
                until,
                limit,
                reason,
            });
        }
    }
    latest.unwrap_or(Decision::Now)
}

/// When `limit` (at most `max` per window, `reserved` of them kept for others) lets an order
/// for `names` through, if not now; with the reason.
fn wait_for(
    limit: Limit,
    max: u32,
    reserved: u32,
    attempts: &[Attempt],
    names: &[String],
    now: u64,
) -> Option<(u64, String)> {
    let window = limit.window().as_secs();
    let since = now.saturating_sub(window);
    let cap = max.saturating_sub(reserved) as usize;
    let mut latest: Option<(u64, String)> = None;
    for key in limit.keys(names) {
        let mut times: Vec<u64> = attempts
            .iter()
            .filter(|a| a.at > since && limit.counts(a))
            .filter(|a| limit.counts_under(&a.names, &key))
            .map(|a| a.at)
            .collect();
        if times.len() < cap {
            continue;
        }
        times.sort_unstable();
        let until = match cap {
            // Everything is kept for the renewals waiting: look again soon.
            0 if max > 0 && reserved > 0 => now + RENEWALS_FIRST_WAIT,
            0 => now + window,
            cap => times[times.len() - cap] + window,
        };
        if latest.as_ref().is_some_and(|(at, _)| *at >= until) {
            continue;
        }
        let whose = match limit {
            Limit::NewOrders => "this account".to_owned(),
            Limit::CertificatesPerDomain => format!("the registered domain {key}"),
            Limit::Duplicates => format!("exactly these names ({key})"),
            Limit::FailedValidations => format!("the name {key}"),
        };
        let what = match limit {
            Limit::NewOrders => "orders",
            Limit::CertificatesPerDomain | Limit::Duplicates => "certificates",
            Limit::FailedValidations => "failed validations",
        };
        let mut reason = format!(
            "{} {what} for {whose} in the last {}, the CA allows {max} (acme.limits.{})",
            times.len(),
            humantime::format_duration(limit.window()),
            limit.key()
        );
        if reserved > 0 {
            reason.push_str(&format!(
                "; {reserved} kept for renewals of certificates in service"
            ));
        }
        latest = Some((until, reason));
    }
    latest
}

/// How many of `limit`'s window are used now, at the busiest key (the account, a domain, a
/// set of names, a name), and that key.
pub fn used(limit: Limit, attempts: &[Attempt], now: u64) -> (u32, Option<String>) {
    let since = now.saturating_sub(limit.window().as_secs());
    let mut counts: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    for attempt in attempts.iter().filter(|a| a.at > since && limit.counts(a)) {
        for key in limit.keys(&attempt.names) {
            *counts.entry(key).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map_or((0, None), |(key, n)| {
            (n, Some(key).filter(|k| !k.is_empty()))
        })
}

#[cfg(test)]
mod tests;
