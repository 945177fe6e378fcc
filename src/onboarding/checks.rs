//! The per-site onboarding steps, each a job on the node's queue: check the site's DNS,
//! move it pending_dns → verified → issuing → active (or failed, queued, dns_moved), back
//! off while nothing changes, and hand the site to the certificate owner once its DNS
//! points here.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::definitions::site_names;
use super::dns::Verdict;
use super::*;
use crate::certs::CertState;
use crate::certs::record::unix;
use crate::certs::window::backoff;
use crate::schedule::{Job, JobFuture, Wake};
use crate::store::Claim;
use crate::tls::SiteTable;

/// A registered site's DNS checks and status, on the node's queue.
pub struct SiteCheck {
    onboarding: Weak<Onboarding>,
    /// Shared with the queue's two indexes: one allocation per site, not three.
    id: Arc<str>,
    table: Arc<SiteTable>,
    /// This node's claim on driving the site (fleet), kept between steps.
    claim: tokio::sync::Mutex<Option<Claim>>,
}

/// The shortest wait of an issuing site between two looks at its certificate's state. It
/// waits for the certificate owner's change stream (`run_scheduler`: an install, a failure
/// or a hold wakes it at once); it looks on its own only every [`FAILED_POLL_MAX`], should
/// a change have been missed.
pub(super) const ISSUING_POLL: Duration = Duration::from_secs(2);

/// How often a node that does not drive a site (another node of the fleet does) looks
/// whether it should take over.
pub(super) const FOLLOWER_WAIT: Duration = Duration::from_secs(2);

/// Longest wait of a failed site before it looks again (its retry may come sooner by hand).
pub(super) const FAILED_POLL_MAX: Duration = Duration::from_secs(30);

/// DNS check steps running at once.
pub(super) const MAX_CHECK_STEPS: usize = 64;

impl Onboarding {
    /// What DNS says about every name of `record`: verified only if all are.
    pub(super) async fn verify(&self, record: &SiteRecord) -> Verdict {
        let Some(dns) = &self.dns else {
            return Verdict::Unavailable {
                reason: "no DNS resolver".into(),
            };
        };
        // A wildcard is proven by its DNS-01 delegation (no record of a wildcard name can be
        // looked up); traffic for it follows the owner's wildcard CNAME.
        if let Some((name, target)) = self.dns01_record(record) {
            return dns.check_cname(&name, &target).await;
        }
        for host in &record.hosts {
            let mut verdict = dns.check_cname(host, &record.cname_target).await;
            if verdict == Verdict::Missing && !self.settings.edge_addresses.is_empty() {
                let delegation = self.delegation_target(record);
                verdict = dns
                    .check_apex(
                        host,
                        &self.settings.edge_addresses,
                        &record.txt_token,
                        delegation.as_deref(),
                    )
                    .await;
            }
            if verdict != Verdict::Verified {
                return verdict;
            }
        }
        Verdict::Verified
    }

    /// Starts the DNS checks of the registered site `id` (a site already queued stays).
    pub fn schedule(&self, id: String, table: Arc<SiteTable>) {
        self.checks.add(self.check_of(id.into(), table));
    }

    /// Starts the DNS checks of every registered site not queued yet, each first due at
    /// its record's next check (a restart with a million sites steps none of them early).
    pub fn schedule_all(&self, table: &Arc<SiteTable>) {
        let due: Vec<(Arc<str>, SystemTime)> = self
            .lock()
            .values()
            .map(|r| {
                (
                    Arc::from(r.id.as_str()),
                    crate::certs::record::from_unix(r.next_check),
                )
            })
            .collect();
        let checks = due
            .into_iter()
            .map(|(id, at)| (self.check_of(id, table.clone()), at));
        self.checks.add_many_at(checks);
    }

    pub(super) fn check_of(&self, id: Arc<str>, table: Arc<SiteTable>) -> SiteCheck {
        SiteCheck {
            onboarding: self.me.clone(),
            id,
            table,
            claim: tokio::sync::Mutex::new(None),
        }
    }

    /// Runs the queue of DNS checks until `cancel`; a site waiting for its certificate is
    /// looked at again as soon as its certificate changes (`changes`, the certificate
    /// owner's stream: installed, failed, held), not at a poll.
    pub async fn run_scheduler(
        self: Arc<Self>,
        mut changes: tokio::sync::broadcast::Receiver<crate::managed::CertChange>,
        cancel: CancellationToken,
    ) {
        let wake_installed = async {
            loop {
                match changes.recv().await {
                    Ok(change) => {
                        if let Some(record) =
                            change.names.first().and_then(|h| self.find(h.as_str()))
                        {
                            self.checks.wake(&Arc::from(record.id.as_str()));
                        }
                    }
                    // Missed some: their sites' polls still find them.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        let store_unsaved = async {
            let mut every = tokio::time::interval(UNSAVED_FLUSH);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                self.store_unsaved();
            }
        };
        tokio::select! {
            () = self.checks.clone().run(cancel) => {}
            () = wake_installed => {}
            () = store_unsaved => {}
        }
        // Stopping: what the last second changed goes to the store before it closes.
        self.store_unsaved();
    }

    /// One step of a site's lifecycle; returns when to take the next. `Never` once the
    /// site is removed.
    pub(super) async fn check_step(
        &self,
        id: &str,
        table: &SiteTable,
        claim: &mut Option<Claim>,
        cancel: &CancellationToken,
    ) -> Wake {
        // Most steps find nothing due: they read one number, not a copy of the record.
        let next_check = self.lock().get(id).map(|r| r.next_check);
        let Some(next_check) = next_check else {
            return self.site_gone(claim).await;
        };
        let now = SystemTime::now();
        let wait = crate::certs::record::from_unix(next_check)
            .duration_since(now)
            .unwrap_or_default();
        if !wait.is_zero() {
            // Nothing to do yet: no claim, no store round trip (a fleet of 100k sites would
            // otherwise ask etcd for 100k locks every few seconds).
            return Wake::At(now + wait.min(UNTOLD_CHANGE_WAIT));
        }
        let Some(record) = self.get(id) else {
            return self.site_gone(claim).await;
        };
        // In a fleet one node drives each site; the others follow it through the store. A
        // claim taken once is kept while this node's lease lives.
        if !claim.as_ref().is_some_and(|held| self.store.holds(held)) {
            match self.store.claim(&format!("site/{id}")).await {
                Ok(Some(held)) => *claim = Some(held),
                Ok(None) => return Wake::At(now + FOLLOWER_WAIT),
                Err(e) => {
                    tracing::warn!(site = %record.hosts.primary(), error = %e, "cannot claim the site's onboarding; will retry");
                    return Wake::At(now + FOLLOWER_WAIT);
                }
            }
        }
        match record.status {
            // Waiting for the renewal side: look again without touching the store or DNS
            // (a failed order is retried by renewal at its own next attempt).
            SiteStatus::Issuing
            | SiteStatus::Verified
            | SiteStatus::Failed
            | SiteStatus::Queued => Wake::At(now + self.await_certificate(&record, table)),
            _ => {
                let verdict = tokio::select! {
                    () = cancel.cancelled() => return Wake::Never,
                    verdict = self.verify(&record) => verdict,
                };
                match self.after_check(&record, verdict) {
                    Some(delay) => {
                        let next = SystemTime::now() + delay;
                        self.update(id, |r| r.next_check = unix(next));
                        Wake::At(next)
                    }
                    None => Wake::At(SystemTime::now()),
                }
            }
        }
    }

    /// A removed site's check ends; its claim is given up.
    pub(super) async fn site_gone(&self, claim: &mut Option<Claim>) -> Wake {
        if let Some(held) = claim.take() {
            self.store.release(held).await;
        }
        Wake::Never
    }

    /// Applies a DNS verdict to a site; returns when to look again.
    pub(super) fn after_check(&self, record: &SiteRecord, verdict: Verdict) -> Option<Duration> {
        let subject = record.hosts.primary().to_owned();
        let s = &self.settings;
        match (record.status, verdict) {
            (SiteStatus::Active, Verdict::Verified) => Some(s.active_recheck),
            (SiteStatus::DnsMoved, Verdict::Verified) => {
                self.update(&record.id, |r| {
                    r.status = SiteStatus::Active;
                    r.moved_since = None;
                    r.reason = None;
                });
                self.set_gate(&record.id, true);
                self.events.record(
                    crate::events::EventKind::SiteActive,
                    &subject,
                    "DNS points here again",
                );
                Some(s.active_recheck)
            }
            (_, Verdict::Verified) => {
                self.update(&record.id, |r| {
                    r.status = SiteStatus::Issuing;
                    r.reason = Some("obtaining a certificate".into());
                    r.checks = 0;
                });
                self.events.record(
                    crate::events::EventKind::SiteVerified,
                    &subject,
                    format!("CNAME reaches {}", record.cname_target),
                );
                tracing::info!(site = %subject, "site verified: DNS points here");
                self.set_gate(&record.id, true);
                self.notify_served_changed(&record.id, &record.hosts);
                Some(Duration::ZERO)
            }
            (SiteStatus::Active, Verdict::Elsewhere { found }) => {
                self.moved(record, &format!("the name now points to {found}"))
            }
            (SiteStatus::Active, Verdict::Missing) => {
                self.moved(record, "the name no longer points here")
            }
            (SiteStatus::DnsMoved, _) => {
                let since = record.moved_since.unwrap_or(unix(SystemTime::now()));
                if unix(SystemTime::now()) >= since + s.moved_grace.as_secs() {
                    self.set_gate(&record.id, false);
                }
                Some(s.active_recheck)
            }
            (_, Verdict::Unavailable { reason }) => {
                tracing::warn!(site = %subject, %reason, "DNS check failed; will retry");
                Some(s.recheck_min)
            }
            (_, Verdict::Elsewhere { found }) => {
                let reason = match self.dns01_record(record) {
                    Some((name, target)) => format!("{name} points to {found}, not {target}"),
                    None => format!("the name points to {found}, not {}", record.cname_target),
                };
                Some(self.pending(record, reason))
            }
            (_, Verdict::Missing) => {
                let reason = match self.dns01_record(record) {
                    Some((name, target)) => format!("no CNAME {name} → {target} yet"),
                    None => format!("no CNAME to {} yet", record.cname_target),
                };
                Some(self.pending(record, reason))
            }
        }
    }

    pub(super) fn pending(&self, record: &SiteRecord, reason: String) -> Duration {
        let checks = record.checks + 1;
        let delay = backoff(
            checks,
            self.settings.recheck_min,
            self.settings.recheck_max,
            0.5,
        );
        self.update(&record.id, |r| {
            r.status = SiteStatus::PendingDns;
            r.reason = Some(reason);
            r.checks = checks;
        });
        delay
    }

    pub(super) fn moved(&self, record: &SiteRecord, reason: &str) -> Option<Duration> {
        self.update(&record.id, |r| {
            r.status = SiteStatus::DnsMoved;
            r.moved_since = Some(unix(SystemTime::now()));
            r.reason = Some(reason.to_owned());
        });
        self.events.record(
            crate::events::EventKind::SiteDnsMoved,
            record.hosts.primary(),
            reason,
        );
        tracing::warn!(site = %record.hosts.primary(), reason, "site DNS moved away; renewals stop after the grace period");
        Some(self.settings.active_recheck)
    }

    /// While issuing (or failed): the site is active once its certificate is in the table.
    /// Returns how long to wait before looking again.
    pub(super) fn await_certificate(&self, record: &SiteRecord, table: &SiteTable) -> Duration {
        let served = table
            .lookup(Some(record.hosts.primary()))
            .is_some_and(|site| site.served_cert().is_some());
        if served {
            self.update(&record.id, |r| {
                r.status = SiteStatus::Active;
                r.reason = None;
                r.next_attempt_at = None;
                r.checks = 0;
                r.next_check = unix(SystemTime::now() + self.settings.active_recheck);
            });
            self.events.record(
                crate::events::EventKind::SiteActive,
                record.hosts.primary(),
                "served over HTTPS",
            );
            tracing::info!(site = %record.hosts.primary(), "site active");
            return Duration::ZERO;
        }
        if let Some(next_attempt) = self.note_queued(record) {
            return next_attempt
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .clamp(ISSUING_POLL, FAILED_POLL_MAX);
        }
        match self.note_issuance_failure(record) {
            // Nothing changes before the renewal task's next attempt.
            Some(next_retry) => next_retry
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .clamp(ISSUING_POLL, FAILED_POLL_MAX),
            // The order's outcome wakes the site (`run_scheduler`).
            None => FAILED_POLL_MAX,
        }
    }

    /// While issuing: an order held back by a CA limit makes the site `queued`, with the
    /// limit and when the next attempt is (one `site.queued` event per new moment). Returns
    /// that moment.
    pub(super) fn note_queued(&self, record: &SiteRecord) -> Option<SystemTime> {
        let status = self.certificates.status(&site_names(record))?;
        let queued = status
            .queued
            .clone()
            .filter(|_| status.state == CertState::Queued)?;
        let next = crate::certs::record::from_unix(queued.next_attempt_at);
        if record.status != SiteStatus::Queued
            || record.next_attempt_at != Some(queued.next_attempt_at)
        {
            let at = humantime::format_rfc3339_seconds(next);
            let reason = format!(
                "the certificate order waits for the CA's limits: {}",
                queued.reason
            );
            self.update(&record.id, |r| {
                r.status = SiteStatus::Queued;
                r.reason = Some(reason.clone());
                r.next_attempt_at = Some(queued.next_attempt_at);
            });
            self.events.record(
                crate::events::EventKind::SiteQueued,
                record.hosts.primary(),
                format!("{reason}; next attempt at {at}"),
            );
        }
        Some(next)
    }

    /// While issuing: a failed order makes the site `failed`, with the CA's reason and when
    /// the next attempt is (the renewal task retries by itself). One `site.failed` event per
    /// failed attempt. Returns the next attempt's time when the last one failed.
    pub(super) fn note_issuance_failure(&self, record: &SiteRecord) -> Option<SystemTime> {
        let failure = self
            .certificates
            .status(&site_names(record))?
            .failure
            .clone()?;
        let next_retry = crate::certs::record::from_unix(failure.next_retry);
        if record.status != SiteStatus::Failed || record.failures != failure.attempts {
            let reason = format!("certificate order failed: {}", failure.reason);
            self.update(&record.id, |r| {
                r.status = SiteStatus::Failed;
                r.next_attempt_at = None;
                r.reason = Some(reason.clone());
                r.failures = failure.attempts;
            });
            self.events.record(
                crate::events::EventKind::SiteFailed,
                record.hosts.primary(),
                format!(
                    "{reason}; retrying at {}",
                    humantime::format_rfc3339_seconds(next_retry)
                ),
            );
        }
        Some(next_retry)
    }
}

impl Job for SiteCheck {
    type Key = Arc<str>;

    fn key(&self) -> Arc<str> {
        self.id.clone()
    }

    fn step(self: Arc<Self>, cancel: CancellationToken) -> JobFuture<Wake> {
        Box::pin(async move {
            let Some(onboarding) = self.onboarding.upgrade() else {
                return Wake::Never;
            };
            let mut claim = self.claim.lock().await;
            onboarding
                .check_step(&self.id, &self.table, &mut claim, &cancel)
                .await
        })
    }
}
