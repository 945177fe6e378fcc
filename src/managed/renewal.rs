//! The renewal work of one site, one step at a time (a job on the node's queue,
//! `schedule.rs`, which runs each step when it is due): a step finds when its certificate is due (the first order at
//! once; a renewal at a randomised moment in the first half of the window, or inside the
//! CA's suggested window where ACME Renewal Information is offered; an upload when it enters
//! its window), then issues, stores and swaps. Failures back off exponentially with jitter,
//! honour Retry-After and rate limits, and never take the certificate in service away.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest::{SHA256, digest};
use tokio_util::sync::CancellationToken;

use super::outcome::{Outcome, in_window, remind};
use super::{CertManager, state_at};
use crate::certs::ServedCert;
use crate::certs::record::from_unix;
use crate::certs::{CertRecord, Source, window};
use crate::issue::Issuer;
use crate::schedule::{Job, JobFuture, Wake};
use crate::sites::Site;

/// Longest single sleep: the plan is recomputed at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// Wait when another order for the same names is already in flight.
const BUSY_WAIT: Duration = Duration::from_secs(1);
/// Wait when the store cannot be reached to claim an order.
const STORE_WAIT: Duration = Duration::from_secs(5);

/// A managed site's renewal work on the node's queue.
pub(super) struct RenewalJob {
    pub(super) manager: std::sync::Weak<CertManager>,
    pub(super) site: Arc<Site>,
    pub(super) state: tokio::sync::Mutex<RenewalState>,
}

impl Job for RenewalJob {
    /// The site, by address (a changed site is a new `Site`).
    type Key = usize;

    fn key(&self) -> usize {
        Arc::as_ptr(&self.site) as usize
    }

    fn step(self: Arc<Self>, cancel: CancellationToken) -> JobFuture<Wake> {
        Box::pin(async move {
            let Some(manager) = self.manager.upgrade() else {
                return Wake::Never;
            };
            let mut state = self.state.lock().await;
            step(&manager, &self.site, &mut state, &cancel).await
        })
    }

    fn gate(self: Arc<Self>, cancel: CancellationToken) -> JobFuture<bool> {
        Box::pin(async move {
            let Some(gate) = self.site.gate() else {
                return true;
            };
            tokio::select! {
                () = cancel.cancelled() => false,
                () = self.site.retired().cancelled() => false,
                () = gate.opened() => true,
            }
        })
    }

    fn urgent(&self) -> bool {
        self.site.renewal_requested()
    }
}

/// What one site's renewal work remembers between steps.
#[derive(Debug, Default)]
pub(super) struct RenewalState {
    /// The CA's suggested window (ARI) for the serial it was fetched for.
    ari: Option<(String, Option<(SystemTime, SystemTime)>)>,
    last_reminder: Option<SystemTime>,
}

/// The issuer that renews `site`'s certificate; `None` when nothing does (an unmanaged upload
/// only gets expiry reminders, and so does a site whose issuer is not configured).
fn renewing_issuer<'a>(manager: &'a CertManager, site: &Site) -> Option<&'a dyn Issuer> {
    let config = site.config();
    let replaceable = config.cert.is_none() || config.managed;
    manager.issuer_for(config).filter(|_| replaceable)
}

/// When `cert` falls due by its own validity: at a moment spread over the first half of its
/// renewal window when something renews it, else (a reminder) as the window opens.
fn own_window(manager: &CertManager, renewed: bool, cert: &ServedCert, spread: f64) -> SystemTime {
    let info = &cert.bundle.info;
    let renew_before = manager.settings.renew_before;
    if renewed {
        window::renew_at(info.not_before, info.not_after, renew_before, spread)
    } else {
        window::window_start(info.not_before, info.not_after, renew_before)
    }
}

/// `due`, no earlier than the retry of the last failure or of an order a CA limit holds back.
fn held_back(due: SystemTime, status: Option<&super::inventory::RecordStatus>) -> SystemTime {
    let mut due = due;
    if let Some(failure) = status.and_then(|s| s.failure.as_ref()) {
        due = due.max(from_unix(failure.next_retry));
    }
    if let Some(queued) = status.and_then(|s| s.queued.as_ref()) {
        due = due.max(from_unix(queued.next_attempt_at));
    }
    due
}

/// When `site`'s first step should run, from what is in memory: at once when it has no
/// certificate, a renewal was asked for or it is due; else when it falls due, and no later
/// than a [`MAX_SLEEP`] spread by its serial — when a first step would have looked again
/// anyway (and asked the CA for its ARI window). A first step that is not due only computes
/// that moment, so a start queues a million sites at it instead of running a million steps
/// at once (seconds of both cores, beside the first handshakes and registrations) and then
/// again all in the same second every hour.
pub(super) fn first_step_at(manager: &CertManager, site: &Site, now: SystemTime) -> SystemTime {
    let Some(cert) = site.served_cert() else {
        return now;
    };
    if site.renewal_requested() {
        return now;
    }
    let spread = spread_of(&cert.bundle.info.serial);
    let renewed = renewing_issuer(manager, site).is_some();
    let status = manager.status(&site.config().hosts);
    let due = held_back(
        own_window(manager, renewed, &cert, spread),
        status.as_deref(),
    );
    if due <= now {
        return now;
    }
    due.min(now + MAX_SLEEP.mul_f64(spread))
}

/// One step of `site`'s renewal work: decides whether its certificate is due and, if so,
/// obtains, stores and swaps it (or records the failure). Returns when to look again.
pub(super) async fn step(
    manager: &Arc<CertManager>,
    site: &Arc<Site>,
    state: &mut RenewalState,
    cancel: &CancellationToken,
) -> Wake {
    if site.is_retired() || cancel.is_cancelled() {
        return Wake::Never;
    }
    let config = site.config();
    let issuer = renewing_issuer(manager, site);
    let served = site.served_cert();
    // The record's status is in memory; the record itself (its chain, for ARI and for the
    // outcome) is read from the store only when it is needed, so a restart with a million
    // sites does not read a million records a second time.
    let status = manager.status(&config.hosts);
    let mut record = None;
    let now = SystemTime::now();

    let mut due = match &served {
        None => now,
        Some(cert) => {
            let info = &cert.bundle.info;
            let spread = spread_of(&info.serial);
            let mut at = own_window(manager, issuer.is_some(), cert, spread);
            if let Some(issuer) = issuer
                && cert.source == Source::Acme
            {
                if state
                    .ari
                    .as_ref()
                    .is_none_or(|(serial, _)| *serial != info.serial)
                {
                    record = manager.load_record(&config.hosts).ok().flatten();
                    if let Some(chain) = record.as_ref().and_then(|r| r.chain_pem.as_deref()) {
                        state.ari =
                            Some((info.serial.clone(), issuer.suggested_window(chain).await));
                    }
                }
                if let Some((_, Some((start, end)))) = &state.ari {
                    at = window::inside(*start, *end, spread);
                }
            }
            at
        }
    };
    due = held_back(due, status.as_deref());
    let forced = site.take_forced_renewal();
    if forced {
        tracing::info!(site = site.name(), "renewal forced");
        due = now;
    }
    if due > now {
        return Wake::At(due.min(now + MAX_SLEEP));
    }

    let Some(issuer) = issuer else {
        // Nothing will renew this one: remind on entering the window, then daily.
        if served.is_some() {
            remind(
                manager,
                site,
                &mut state.last_reminder,
                now,
                "it will not be renewed automatically: upload a new one",
            );
        }
        return Wake::At(now + MAX_SLEEP);
    };

    if site.gate().is_some_and(|gate| !gate.is_open()) {
        // An onboarded site whose DNS does not point here: never ask a CA for it.
        return Wake::OnGate;
    }
    // In a fleet one node orders for these names at a time; the others wait for the
    // result to arrive through the store's watch (it moves `due` forward).
    let claim = match manager.store.claim(&claim_name(&config.hosts)).await {
        Ok(Some(claim)) => claim,
        Ok(None) => return Wake::At(now + BUSY_WAIT),
        Err(e) => {
            tracing::warn!(site = site.name(), error = %e, "cannot claim the order; the certificate in service keeps serving");
            return Wake::At(now + STORE_WAIT);
        }
    };
    // Another node may have finished this very order just before we claimed it (only
    // another node can have written the record since this step read it).
    if matches!(claim, crate::store::Claim::Fleet(_)) && manager.adopt_stored(site) {
        manager.store.release(claim).await;
        return Wake::At(SystemTime::now());
    }
    note_due(manager, site, served.as_deref(), issuer, now, forced);
    if record.is_none() {
        record = manager.load_record(&config.hosts).ok().flatten();
    }
    let attempt = tokio::select! {
        () = cancel.cancelled() => return Wake::Never,
        () = site.retired().cancelled() => return Wake::Never,
        result = manager.issue_once(&config.hosts, issuer, served.is_some()) => result,
    };
    let Some(attempt) = attempt else {
        // Another order for the same names runs in this process.
        manager.store.release(claim).await;
        return Wake::At(SystemTime::now() + BUSY_WAIT);
    };
    let next = Outcome {
        manager,
        site,
        claim: &claim,
        issuer,
        served: served.as_deref(),
        now,
    }
    .apply(record, attempt, &mut state.last_reminder);
    manager.store.release(claim).await;
    if next.is_break() {
        Wake::Never
    } else {
        // Look again at once: the new certificate (or the failure) sets the next moment.
        Wake::At(SystemTime::now())
    }
}

/// The fleet lock of the order for `names`.
fn claim_name(names: &[crate::certs::HostName]) -> String {
    format!("cert/{}", crate::certs::record::id(names))
}

/// Records that an attempt is due: `pending` for a first order, `expiring` (with a WARN the
/// first time) for a certificate in its window that is not renewed yet. A forced renewal of
/// a certificate outside its window is just that, not an expiry.
fn note_due(
    manager: &CertManager,
    site: &Site,
    served: Option<&ServedCert>,
    issuer: &dyn Issuer,
    now: SystemTime,
    forced: bool,
) {
    let names = &site.config().hosts;
    let Some(cert) = served else {
        manager.set_state(names, issuer.source(), CertRecord::set_ordering);
        return;
    };
    if forced && !in_window(manager, cert, now) {
        return;
    }
    let info = &cert.bundle.info;
    let state = state_at(info.not_after, now, now);
    manager.set_state(names, issuer.source(), |r| {
        if r.failure.is_none() && r.state != state {
            r.set_window_state(state);
            manager.events.record(
                crate::events::EventKind::CertificateExpiring,
                site.name(),
                "in its renewal window, renewing",
            );
            tracing::warn!(
                site = site.name(),
                serial = %info.serial,
                not_after = %humantime::format_rfc3339_seconds(info.not_after),
                event = "expiring",
                "certificate is in its renewal window and not renewed yet; renewing now"
            );
        }
    });
}

/// A stable number in [0, 1) derived from a serial: where in the window it renews, the same
/// after a restart.
fn spread_of(serial: &str) -> f64 {
    let hash = digest(&SHA256, serial.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash.as_ref()[..8]);
    (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::super::outcome::jitter;
    use super::*;

    #[test]
    fn spread_is_stable_and_in_range() {
        let a = spread_of("01:02:03");
        assert_eq!(a, spread_of("01:02:03"));
        assert!((0.0..1.0).contains(&a));
        assert_ne!(a, spread_of("01:02:04"));
        assert!((0.0..1.0).contains(&jitter()));
    }
}
