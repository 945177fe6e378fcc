//! The ledger of one ACME directory's orders, kept in the store (`acme/ledger-<dir>/`, one
//! small entry per order) so that a restarted node, and every node of a fleet, counts the
//! same past orders against the CA's limits (`limits.rs`). Before an order is placed the
//! ledger decides under a lock (the fleet's store lock on etcd) and records it as placed; its
//! outcome is written when it ends. Entries older than the longest window are pruned.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::limits::{Attempt, CaLimits, Decision, Limit, Outcome, decide, used};
use crate::certs::record::unix;
use crate::store::Store;

/// How long a fleet node trusts its copy of the ledger between orders (other nodes write
/// too). One node is the only writer of its store: its copy is always current.
const FLEET_REFRESH: Duration = Duration::from_millis(500);
/// The longest window of any limit: older entries are pruned.
const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// One directory's ledger and limits.
pub struct Ledger {
    store: Arc<Store>,
    dir: String,
    limits: CaLimits,
    /// The ledger as last read, by entry key; serialises decisions on this node.
    copy: tokio::sync::Mutex<Copy>,
    /// Orders waiting behind a limit, in the order they arrived.
    waiting: Mutex<Waiting>,
    /// Orders held back since start, for `/metrics`.
    held: std::sync::atomic::AtomicU64,
}

/// The ledger as last read: entry keys and attempts, side by side (a decision reads the
/// attempts as one slice).
#[derive(Default)]
struct Copy {
    keys: Vec<String>,
    attempts: Vec<Attempt>,
    read_at: Option<Instant>,
}

/// Why an order is not placed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotNow {
    /// Not before `until` (Unix seconds): `limit` holds it.
    Wait {
        until: u64,
        limit: Limit,
        reason: String,
    },
    /// Never as it is.
    Never { reason: String },
}

/// An order the ledger let through; its outcome is recorded with [`Ledger::finish`].
#[derive(Debug)]
pub struct Placed {
    key: String,
    attempt: Attempt,
}

/// A limit's use, as `GET /api/v1/ca` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LimitUse {
    pub limit: Limit,
    pub key: &'static str,
    pub max: u32,
    pub window_secs: u64,
    pub used: u32,
    /// The registered domain, name set or name with the highest use (per-key limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busiest: Option<String>,
}

impl Ledger {
    pub fn new(store: Arc<Store>, directory_id: &str, limits: CaLimits) -> Self {
        Self {
            store,
            dir: format!("acme/ledger-{directory_id}"),
            limits,
            copy: tokio::sync::Mutex::new(Copy::default()),
            waiting: Mutex::new(Waiting::default()),
            held: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn limits(&self) -> &CaLimits {
        &self.limits
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decides whether an order for `names` (certificate id `id`) may be placed now and, if
    /// so, records it as placed. A store that cannot be read holds every order back: a
    /// limit that cannot be counted is not risked.
    pub async fn admit(&self, id: &str, names: &[String], renewal: bool) -> Result<Placed, NotNow> {
        let claim = match self.store.claim(&format!("{}/decide", self.dir)).await {
            Ok(Some(claim)) => claim,
            Ok(None) => {
                return Err(NotNow::Wait {
                    until: unix(SystemTime::now()) + 1,
                    limit: Limit::NewOrders,
                    reason: "another node is placing an order; the CA's limits are counted one order at a time".into(),
                });
            }
            Err(e) => return Err(self.unreadable(&e)),
        };
        let result = self.admit_claimed(id, names, renewal).await;
        self.store.release(claim).await;
        if result.is_err() {
            self.held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    async fn admit_claimed(
        &self,
        id: &str,
        names: &[String],
        renewal: bool,
    ) -> Result<Placed, NotNow> {
        let mut copy = self.copy.lock().await;
        self.refresh(&mut copy).map_err(|e| self.unreadable(&e))?;
        let now = unix(SystemTime::now());
        let renewals_waiting = {
            let waiting = self.waiting();
            waiting
                .renewals
                .len()
                .saturating_sub(usize::from(waiting.renewals.contains(id))) as u32
        };
        match decide(
            &self.limits,
            &copy.attempts,
            names,
            renewal,
            renewals_waiting,
            now,
        ) {
            Decision::Now => {}
            Decision::Wait {
                until,
                limit: Limit::NewOrders,
                reason,
            } => {
                // Everyone held by the account's limit would otherwise come back at the same
                // moment, when one order leaves the window: each comes back when its turn
                // can come (renewals first, then new certificates, each in arrival order).
                let mut waiting = self.waiting();
                let turn = waiting.turn(id, renewal);
                let per_slot = Limit::NewOrders.window().as_secs()
                    / u64::from(self.limits.new_orders_per_3h.unwrap_or(1).max(1));
                return Err(NotNow::Wait {
                    until: until + turn * per_slot,
                    limit: Limit::NewOrders,
                    reason,
                });
            }
            Decision::Wait {
                until,
                limit,
                reason,
            } => {
                if renewal {
                    self.waiting().turn(id, true);
                }
                return Err(NotNow::Wait {
                    until,
                    limit,
                    reason,
                });
            }
            Decision::Never { reason } => return Err(NotNow::Never { reason }),
        }
        self.waiting().leave(id);
        let attempt = Attempt {
            at: now,
            names: names.to_vec(),
            outcome: Outcome::Placed,
            renewal,
        };
        let key = format!("{}/{}-{}.json", self.dir, now, crate::seal::random_hex(4));
        self.store
            .save_json(&key, &attempt)
            .map_err(|e| self.unreadable(&e))?;
        copy.keys.push(key.clone());
        copy.attempts.push(attempt.clone());
        Ok(Placed { key, attempt })
    }

    /// Records how a placed order ended. One the CA never saw (a failed pre-flight, a CA out
    /// of reach) leaves the ledger: it counts for nothing, and a site failing for days would
    /// otherwise fill it.
    pub async fn finish(&self, mut placed: Placed, outcome: Outcome) {
        if outcome == Outcome::NotPlaced {
            if let Err(e) = self.store.remove(&placed.key) {
                tracing::warn!(error = %e, "cannot withdraw an order the CA never saw from the CA ledger; it counts as placed");
                return;
            }
            let mut copy = self.copy.lock().await;
            if let Some(at) = copy.keys.iter().rposition(|k| *k == placed.key) {
                copy.keys.swap_remove(at);
                copy.attempts.swap_remove(at);
            }
            return;
        }
        placed.attempt.outcome = outcome;
        if let Err(e) = self.store.save_json(&placed.key, &placed.attempt) {
            tracing::warn!(error = %e, "cannot record the order's outcome in the CA ledger; it counts as placed");
            return;
        }
        let mut copy = self.copy.lock().await;
        if let Some(at) = copy.keys.iter().rposition(|k| *k == placed.key) {
            copy.attempts[at] = placed.attempt;
        }
    }

    /// An order that no longer waits (the site was removed, or it was issued elsewhere).
    pub fn forget_waiting(&self, id: &str) {
        self.waiting().leave(id);
    }

    fn unreadable(&self, e: &crate::store::StoreError) -> NotNow {
        NotNow::Wait {
            until: unix(SystemTime::now()) + 5,
            limit: Limit::NewOrders,
            reason: format!(
                "the CA's limits cannot be counted: the order ledger is unreadable ({e})"
            ),
        }
    }

    /// Re-reads the ledger when this node may not have seen every order (fleet), pruning
    /// entries no window looks at any more.
    fn refresh(&self, copy: &mut Copy) -> Result<(), crate::store::StoreError> {
        let fresh = copy
            .read_at
            .is_some_and(|at| self.store.fleet().is_none() || at.elapsed() < FLEET_REFRESH);
        if fresh {
            return Ok(());
        }
        let (entries, failure) = self.store.scan_map(&self.dir, ".json", |key, bytes| {
            serde_json::from_slice::<Attempt>(bytes)
                .ok()
                .map(|a| (key.to_owned(), a))
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let oldest = unix(SystemTime::now()).saturating_sub(KEEP.as_secs());
        copy.keys.clear();
        copy.attempts.clear();
        for (key, attempt) in entries.into_iter().flatten() {
            if attempt.at < oldest {
                if let Err(e) = self.store.remove(&key) {
                    tracing::debug!(error = %e, "cannot prune an old CA ledger entry");
                }
            } else {
                copy.keys.push(key);
                copy.attempts.push(attempt);
            }
        }
        copy.read_at = Some(Instant::now());
        Ok(())
    }

    /// Each counted limit's use now, and how many renewals wait behind one.
    pub async fn usage(&self) -> (Vec<LimitUse>, usize, u64) {
        let mut copy = self.copy.lock().await;
        if let Err(e) = self.refresh(&mut copy) {
            tracing::debug!(error = %e, "the CA ledger is unreadable; showing the last copy");
        }
        let attempts = &copy.attempts;
        let now = unix(SystemTime::now());
        let uses = self
            .limits
            .windows()
            .into_iter()
            .filter_map(|(limit, max)| {
                let max = max?;
                let (used, busiest) = used(limit, attempts, now);
                Some(LimitUse {
                    limit,
                    key: limit.key(),
                    max,
                    window_secs: limit.window().as_secs(),
                    used,
                    busiest,
                })
            })
            .collect();
        (
            uses,
            self.waiting().renewals.len(),
            self.held.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

/// Orders held behind a limit on this node, each with its arrival number.
#[derive(Default)]
struct Waiting {
    /// Renewals of certificates in service (they go first).
    renewals: HashSet<String>,
    /// id → (arrival number, renewal); and arrival numbers in order, per kind.
    arrivals: HashMap<String, (u64, bool)>,
    renewal_order: BTreeMap<u64, String>,
    new_order: BTreeMap<u64, String>,
    /// The next arrival number of each kind.
    next_renewal: u64,
    next_new: u64,
}

impl Waiting {
    /// Joins the queue (if not in it yet); how many orders are ahead: every renewal ahead
    /// of a renewal, every renewal and every earlier new certificate ahead of a new one
    /// (counted from the oldest still waiting, so one that left early leaves a gap).
    fn turn(&mut self, id: &str, renewal: bool) -> u64 {
        let seq = match self.arrivals.get(id) {
            Some((seq, _)) => *seq,
            None => {
                let next = if renewal {
                    &mut self.next_renewal
                } else {
                    &mut self.next_new
                };
                let seq = *next;
                *next += 1;
                self.arrivals.insert(id.to_owned(), (seq, renewal));
                if renewal {
                    self.renewals.insert(id.to_owned());
                    self.renewal_order.insert(seq, id.to_owned());
                } else {
                    self.new_order.insert(seq, id.to_owned());
                }
                seq
            }
        };
        let (order, before) = if renewal {
            (&self.renewal_order, 0)
        } else {
            (&self.new_order, self.renewals.len() as u64)
        };
        let head = order.keys().next().copied().unwrap_or(seq);
        before + seq.saturating_sub(head)
    }

    /// Leaves the queue (placed, or no longer wanted).
    fn leave(&mut self, id: &str) {
        if let Some((seq, renewal)) = self.arrivals.remove(id) {
            if renewal {
                self.renewals.remove(id);
                self.renewal_order.remove(&seq);
            } else {
                self.new_order.remove(&seq);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Waiting;

    #[test]
    fn each_waiting_order_gets_its_own_turn_renewals_first() {
        let mut waiting = Waiting::default();
        assert_eq!(waiting.turn("new-a", false), 0);
        assert_eq!(waiting.turn("new-b", false), 1);
        assert_eq!(
            waiting.turn("new-a", false),
            0,
            "asking again keeps the place"
        );
        // A renewal goes before every new certificate.
        assert_eq!(waiting.turn("renew-x", true), 0);
        assert_eq!(waiting.turn("new-a", false), 1);
        assert_eq!(waiting.turn("new-c", false), 3);
        waiting.leave("renew-x");
        waiting.leave("new-a");
        assert_eq!(waiting.turn("new-b", false), 0);
        assert_eq!(waiting.turn("new-c", false), 1);
        assert!(waiting.renewals.is_empty());
    }
}
