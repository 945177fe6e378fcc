//! One time-ordered queue of renewal work per node, instead of a task per site: each managed
//! site has an entry at the moment its next step is due (`renewal::step` says when); one
//! driver sleeps until the earliest entry, runs what is due (at most `MAX_STEPS` at once,
//! each as a short-lived task) and puts each site back at its next moment. A million sites
//! cost a million entries, not a million sleeping tasks. A forced renewal moves a site's
//! entry to now; a site whose issuance gate is closed waits for it to open off the queue.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::CertManager;
use super::renewal::{RenewalState, Wake, step};
use crate::sites::Site;

/// Steps running at once (orders are bounded separately by `acme.max_concurrent_orders`).
const MAX_STEPS: usize = 256;

/// A queue position: due time, then insertion order.
type Key = (SystemTime, u64);

/// One site's entry.
struct Work {
    site: Arc<Site>,
    /// Held while a step runs: a site never has two steps at once.
    state: tokio::sync::Mutex<RenewalState>,
}

#[derive(Default)]
struct Queue {
    by_time: BTreeMap<Key, usize>,
    /// Site (by address) → its work and its place in `by_time`, if queued.
    works: HashMap<usize, (Arc<Work>, Option<Key>)>,
}

/// The node's renewal queue.
pub struct Scheduler {
    queue: Mutex<Queue>,
    seq: AtomicU64,
    changed: Notify,
}

fn id_of(site: &Arc<Site>) -> usize {
    Arc::as_ptr(site) as usize
}

impl Default for Scheduler {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            seq: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }
}

impl Scheduler {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts renewal work for `site`: its first step runs at once.
    pub fn add(&self, site: Arc<Site>) {
        let id = id_of(&site);
        {
            let mut queue = self.lock();
            queue.works.entry(id).or_insert_with(|| {
                (
                    Arc::new(Work {
                        site,
                        state: tokio::sync::Mutex::new(RenewalState::default()),
                    }),
                    None,
                )
            });
        }
        self.schedule(id, SystemTime::now());
    }

    /// Stops the work of `site` (retired).
    pub fn remove(&self, site: &Arc<Site>) {
        let mut queue = self.lock();
        if let Some((_, Some(key))) = queue.works.remove(&id_of(site)) {
            queue.by_time.remove(&key);
        }
    }

    /// Runs the step of `site` now (a forced renewal, an opened gate).
    pub fn wake(&self, site: &Arc<Site>) {
        self.schedule(id_of(site), SystemTime::now());
    }

    /// Entries in the queue (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().works.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts site `id` at `at`, unless it is already queued earlier.
    fn schedule(&self, id: usize, at: SystemTime) {
        let key = (at, self.seq.fetch_add(1, Ordering::Relaxed));
        let mut queue = self.lock();
        let Some((_, queued)) = queue.works.get(&id) else {
            return;
        };
        let old = *queued;
        if old.is_some_and(|old| old.0 <= at) {
            return;
        }
        if let Some(old) = old {
            queue.by_time.remove(&old);
        }
        queue.by_time.insert(key, id);
        if let Some(entry) = queue.works.get_mut(&id) {
            entry.1 = Some(key);
        }
        drop(queue);
        self.changed.notify_one();
    }

    /// Takes every entry due at `now`; returns them and the next due moment.
    fn take_due(&self, now: SystemTime) -> (Vec<(usize, Arc<Work>)>, Option<SystemTime>) {
        let mut queue = self.lock();
        let mut due = Vec::new();
        while let Some((&key, &id)) = queue.by_time.first_key_value() {
            if key.0 > now {
                break;
            }
            queue.by_time.remove(&key);
            if let Some(entry) = queue.works.get_mut(&id) {
                entry.1 = None;
                due.push((id, entry.0.clone()));
            }
        }
        let next = queue.by_time.first_key_value().map(|(key, _)| key.0);
        (due, next)
    }

    /// Drives the queue until `cancel`.
    pub async fn run(self: Arc<Self>, manager: Arc<CertManager>, cancel: CancellationToken) {
        let steps = Arc::new(Semaphore::new(MAX_STEPS));
        loop {
            let changed = self.changed.notified();
            let (due, next) = self.take_due(SystemTime::now());
            for (id, work) in due {
                let Ok(permit) = steps.clone().acquire_owned().await else {
                    return;
                };
                let (scheduler, manager, cancel) = (self.clone(), manager.clone(), cancel.clone());
                tokio::spawn(async move {
                    let wake = {
                        let mut state = work.state.lock().await;
                        step(&manager, &work.site, &mut state, &cancel).await
                    };
                    drop(permit);
                    scheduler.after_step(id, &work.site, wake, &cancel);
                });
            }
            let sleep = next.map_or(Duration::from_secs(3600), |at| {
                at.duration_since(SystemTime::now()).unwrap_or_default()
            });
            tokio::select! {
                () = cancel.cancelled() => return,
                () = changed => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Puts a site back after a step.
    fn after_step(
        self: &Arc<Self>,
        id: usize,
        site: &Arc<Site>,
        wake: Wake,
        cancel: &CancellationToken,
    ) {
        // A renewal forced while the step ran is not lost.
        let at = match wake {
            Wake::Never => {
                self.remove(site);
                return;
            }
            _ if site.renewal_requested() => SystemTime::now(),
            Wake::At(at) => at,
            Wake::OnGate => {
                let Some(mut gate) = site.gate() else {
                    return self.schedule(id, SystemTime::now());
                };
                let (scheduler, site, cancel) = (self.clone(), site.clone(), cancel.clone());
                let retired = site.retired().clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = retired.cancelled() => scheduler.remove(&site),
                        _ = gate.wait_for(|open| *open) => scheduler.wake(&site),
                    }
                });
                return;
            }
        };
        self.schedule(id, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::HostName;
    use crate::config::{IssuerKind, OriginUrl, SiteConfig};

    fn site(name: &str) -> Arc<Site> {
        let config = SiteConfig {
            hosts: vec![HostName::parse(name).unwrap()],
            origins: vec![OriginUrl {
                authority: "127.0.0.1:8080".parse().unwrap(),
            }],
            cert: None,
            hsts: None,
            issuer: IssuerKind::Internal,
            managed: true,
            registered: false,
        };
        Arc::new(Site::build(config, None, Duration::from_secs(1)))
    }

    #[test]
    fn entries_come_out_in_time_order_and_the_earlier_wins() {
        let scheduler = Scheduler::default();
        let (a, b) = (site("a.test"), site("b.test"));
        scheduler.add(a.clone());
        scheduler.add(b.clone());
        let now = SystemTime::now();
        let (due, _) = scheduler.take_due(now + Duration::from_secs(1));
        assert_eq!(due.len(), 2, "new sites run at once");

        scheduler.schedule(id_of(&a), now + Duration::from_secs(60));
        scheduler.schedule(id_of(&b), now + Duration::from_secs(30));
        // A later moment does not push back an earlier one; an earlier one replaces it.
        scheduler.schedule(id_of(&b), now + Duration::from_secs(90));
        scheduler.schedule(id_of(&a), now + Duration::from_secs(10));
        let (due, next) = scheduler.take_due(now + Duration::from_secs(20));
        assert_eq!(
            due.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![id_of(&a)]
        );
        assert_eq!(next, Some(now + Duration::from_secs(30)));

        // A removed site is gone from the queue and the count.
        scheduler.remove(&b);
        assert_eq!(scheduler.len(), 1);
        let (due, next) = scheduler.take_due(now + Duration::from_secs(3600));
        assert!(due.is_empty() && next.is_none());
        // Waking a site that is not queued (its step runs) queues it once.
        scheduler.wake(&a);
        scheduler.wake(&a);
        let (due, _) = scheduler.take_due(SystemTime::now());
        assert_eq!(due.len(), 1);
    }
}
