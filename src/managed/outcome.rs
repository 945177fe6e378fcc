//! What an order's outcome does: an issued certificate is stored and swapped in (an upload
//! it replaces is kept as replaced), a hold of the CA's limits queues the next attempt, a
//! failure backs off exponentially with jitter and Retry-After and leaves what is in
//! service alone; an outcome for a site removed meanwhile is dropped.

use std::ops::ControlFlow;
use std::time::{Duration, SystemTime};

use super::CertManager;
use crate::certs::HostName;
use crate::certs::ServedCert;
use crate::certs::names::join;
use crate::certs::record::{Failure, Replaced, from_unix, unix};
use crate::certs::{CertRecord, Source, window};
use crate::issue::{Issued, Issuer};
use crate::sites::Site;

/// What one order of a site ended with, and what it is applied to.
pub(super) struct Outcome<'a> {
    pub(super) manager: &'a CertManager,
    pub(super) site: &'a Site,
    /// The order's claim: the outcome is written only while it holds (fencing).
    pub(super) claim: &'a crate::store::Claim,
    pub(super) issuer: &'a dyn Issuer,
    pub(super) served: Option<&'a ServedCert>,
    pub(super) now: SystemTime,
}

/// How often an expiring certificate nobody renews is reported again.
pub(super) const REMINDER_EVERY: Duration = Duration::from_secs(86_400);

/// An `expiring` event (and WARN) when none was raised for a day.
pub(super) fn remind(
    manager: &CertManager,
    site: &Site,
    last: &mut Option<SystemTime>,
    now: SystemTime,
    why: &str,
) {
    if !reminder_due(*last, now) {
        return;
    }
    *last = Some(now);
    let not_after = site
        .served_cert()
        .map(|c| humantime::format_rfc3339_seconds(c.bundle.info.not_after).to_string())
        .unwrap_or_default();
    manager.events.record(
        crate::events::EventKind::CertificateExpiring,
        site.name(),
        format!("expires {not_after}; {why}"),
    );
    tracing::warn!(site = site.name(), %not_after, reason = why, event = "expiring", "certificate is expiring");
}

pub(super) fn reminder_due(last: Option<SystemTime>, now: SystemTime) -> bool {
    last.is_none_or(|at| now.duration_since(at).unwrap_or_default() >= REMINDER_EVERY)
}

/// A fresh random number in [0, 1) for retry jitter.
pub(super) fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

impl Outcome<'_> {
    /// Stores and serves what the order brought, or records its failure. `Break` when the
    /// site was removed meanwhile (nothing is written back).
    pub(super) fn apply(
        &self,
        record: Option<CertRecord>,
        attempt: Result<crate::issue::Issued, crate::issue::IssueError>,
        last_reminder: &mut Option<SystemTime>,
    ) -> ControlFlow<()> {
        let Self {
            manager,
            site,
            claim,
            issuer,
            served,
            now,
        } = *self;
        let config = site.config();
        let attempt = match attempt {
            result if site.is_retired() => {
                tracing::info!(
                    site = site.name(),
                    issued = result.is_ok(),
                    "the site was removed while its order ran; the outcome is discarded"
                );
                return ControlFlow::Break(());
            }
            other => other,
        };
        match attempt {
            Ok(issued) => {
                let mut record =
                    record.unwrap_or_else(|| CertRecord::pending(&config.hosts, issuer.source()));
                record.source = issuer.source();
                if let Some(upload) = served.as_ref().filter(|c| c.source == Source::Uploaded) {
                    record.replaced = Some(Replaced {
                        serial: upload.bundle.info.serial.clone(),
                        not_after: unix(upload.bundle.info.not_after),
                    });
                    manager.events.record(
                        crate::events::EventKind::CertificateReplaced,
                        site.name(),
                        format!(
                            "uploaded certificate {} replaced by a managed one",
                            upload.bundle.info.serial
                        ),
                    );
                    tracing::info!(
                        site = site.name(),
                        serial = %upload.bundle.info.serial,
                        event = "replaced",
                        "uploaded certificate replaced by a managed one"
                    );
                }
                let stored = manager.while_current(site, || {
                    manager.record_issued(claim, &config.hosts, record, &issued)
                });
                match stored {
                    None => return ControlFlow::Break(()),
                    Some(Err(e @ crate::store::StoreError::LockLost { .. })) => {
                        // Another node owns this order now: its certificate arrives by watch.
                        tracing::warn!(site = site.name(), error = %e, "the new certificate is discarded");
                        return ControlFlow::Continue(());
                    }
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        // Served anyway: losing the record costs one more order after a restart.
                        tracing::error!(site = site.name(), error = %e, "cannot store the new certificate");
                    }
                }
                manager.log_issued(&config.hosts, issuer.source(), &issued, served.is_some());
                manager.install(site, ServedCert::new(issued.bundle, issuer.source()));
            }
            Err(crate::issue::IssueError::Held(held)) => {
                let first = record.as_ref().is_none_or(|r| r.queued.is_none());
                let queued = manager.while_current(site, || {
                    manager.set_state_claimed(claim, &config.hosts, issuer.source(), |r| {
                        r.set_queued(crate::certs::record::Queued {
                            limit: held.limit.clone(),
                            reason: held.reason.clone(),
                            next_attempt_at: held.until,
                        });
                    });
                });
                if queued.is_none() {
                    return ControlFlow::Break(());
                }
                let at = humantime::format_rfc3339_seconds(from_unix(held.until));
                if first {
                    manager.events.record(
                        crate::events::EventKind::CertificateQueued,
                        &join(&config.hosts),
                        format!("{}; next attempt at {at}", held.reason),
                    );
                }
                tracing::info!(
                    site = site.name(),
                    names = %join(&config.hosts),
                    limit = %held.limit,
                    next_attempt_at = %at,
                    reason = %held.reason,
                    "order queued behind a CA limit; no request sent"
                );
            }
            Err(error) => {
                let attempts = record
                    .as_ref()
                    .and_then(|r| r.failure.as_ref())
                    .map_or(0, |f| f.attempts)
                    + 1;
                let mut delay = window::backoff(
                    attempts,
                    manager.settings.retry_min,
                    manager.settings.retry_max,
                    jitter(),
                );
                if let Some(after) = error.retry_after() {
                    delay = delay.max(after);
                }
                let next_retry = unix(SystemTime::now() + delay).max(unix(now) + 1);
                let failed = manager.while_current(site, || {
                    manager.set_state_claimed(claim, &config.hosts, issuer.source(), |r| {
                        r.set_failed(Failure {
                            reason: error.to_string(),
                            attempts,
                            next_retry,
                        });
                    });
                });
                if failed.is_none() {
                    return ControlFlow::Break(());
                }
                manager.events.record(
                    crate::events::EventKind::CertificateFailed,
                    &join(&config.hosts),
                    format!(
                        "attempt {attempts}: {}; next in {} s",
                        error,
                        delay.as_secs()
                    ),
                );
                // A reminder only for a certificate in its window: a failed forced renewal
                // of a fresh certificate is not "expiring".
                if served.is_some_and(|cert| in_window(manager, cert, now)) {
                    let why = if attempts > 1 {
                        format!("renewal keeps failing ({attempts} attempts)")
                    } else {
                        "the renewal attempt failed; retrying".to_owned()
                    };
                    remind(manager, site, last_reminder, SystemTime::now(), &why);
                }
                tracing::warn!(
                    site = site.name(),
                    names = %join(&config.hosts),
                    attempts,
                    rate_limited = error.is_rate_limited(),
                    retry_in_s = delay.as_secs(),
                    reason = %error,
                    event = "failed",
                    "{}",
                    if served.is_some() {
                        "certificate renewal failed; the current certificate keeps serving"
                    } else {
                        "certificate issuance failed"
                    }
                );
            }
        }
        ControlFlow::Continue(())
    }
}

impl CertManager {
    pub(super) fn log_issued(
        &self,
        names: &[HostName],
        source: Source,
        issued: &Issued,
        renewal: bool,
    ) {
        let info = &issued.bundle.info;
        self.events.record(
            if renewal {
                crate::events::EventKind::CertificateRenewed
            } else {
                crate::events::EventKind::CertificateIssued
            },
            &join(names),
            format!(
                "{source} certificate, serial {}, valid until {}",
                info.serial,
                humantime::format_rfc3339_seconds(info.not_after)
            ),
        );
        log_issued(names, source, info, renewal);
    }
}

pub(super) fn log_issued(
    names: &[HostName],
    source: Source,
    info: &crate::certs::CertInfo,
    renewal: bool,
) {
    tracing::info!(
        names = %join(names),
        %source,
        serial = %info.serial,
        not_after = %humantime::format_rfc3339_seconds(info.not_after),
        event = if renewal { "renewed" } else { "issued" },
        "{}",
        if renewal { "certificate renewed" } else { "certificate issued" }
    );
}

/// Whether `cert` is inside its renewal window at `now`.
pub(super) fn in_window(manager: &CertManager, cert: &ServedCert, now: SystemTime) -> bool {
    let info = &cert.bundle.info;
    now >= window::window_start(
        info.not_before,
        info.not_after,
        manager.settings.renew_before,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reminders_on_entering_then_daily() {
        let now = SystemTime::now();
        assert!(reminder_due(None, now));
        assert!(!reminder_due(Some(now - Duration::from_secs(3600)), now));
        assert!(reminder_due(Some(now - REMINDER_EVERY), now));
    }
}
