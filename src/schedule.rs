//! One time-ordered queue of recurring work per node, instead of a task per site: each job
//! (a managed site's renewal, a registered site's DNS checks) has an entry at the moment its
//! next step is due; one driver sleeps until the earliest entry, runs what is due (a bounded
//! number at once, each as a short-lived task) and puts each job back at the moment its step
//! returned. A million sites cost a million entries, not a million sleeping tasks. A job can
//! be woken early (a forced renewal); a job waiting on something else (a closed issuance
//! gate) waits off the queue.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// What to do with a job after one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Run the next step at this moment.
    At(SystemTime),
    /// Wait for [`Job::gate`] before the next step.
    OnGate,
    /// Done (its site was retired or removed, or the edge stops).
    Never,
}

/// A future a job returns.
pub type JobFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Recurring work the queue runs.
pub trait Job: Send + Sync + 'static {
    type Key: Hash + Eq + Clone + Send + Sync + 'static;

    fn key(&self) -> Self::Key;

    /// One step; returns when to run the next. Never two at once for one job.
    fn step(self: Arc<Self>, cancel: CancellationToken) -> JobFuture<Wake>;

    /// After [`Wake::OnGate`]: resolves `true` when the job should run again, `false` when it
    /// is done.
    fn gate(self: Arc<Self>, _cancel: CancellationToken) -> JobFuture<bool> {
        Box::pin(async { false })
    }

    /// Whether the job asked to run at once while its step ran (not to be lost).
    fn urgent(&self) -> bool {
        false
    }
}

/// A job taken to run a step, with its key.
type Due<J> = (<J as Job>::Key, Arc<J>);

/// A queue position: due time, then insertion order.
type Position = (SystemTime, u64);

struct Entry<J> {
    job: Arc<J>,
    queued: Option<Position>,
    /// A step is running: a job never has two steps at once.
    running: bool,
    /// It came due again while its step ran: it runs again as soon as that step ends.
    rerun: bool,
}

impl<J> Entry<J> {
    fn new(job: J, queued: Option<Position>) -> Self {
        Self {
            job: Arc::new(job),
            queued,
            running: false,
            rerun: false,
        }
    }
}

struct Queue<J: Job> {
    by_time: BTreeMap<Position, J::Key>,
    jobs: HashMap<J::Key, Entry<J>, foldhash::fast::RandomState>,
}

/// The queue.
pub struct Scheduler<J: Job> {
    queue: Mutex<Queue<J>>,
    seq: AtomicU64,
    changed: Notify,
    /// Steps running at once.
    max_steps: usize,
}

/// Jobs [`Scheduler::add_many_at`] inserts per hold of the queue's lock.
const ADD_BATCH: usize = 4096;

impl<J: Job> Scheduler<J> {
    pub fn new(max_steps: usize) -> Self {
        Self {
            queue: Mutex::new(Queue {
                by_time: BTreeMap::new(),
                jobs: HashMap::default(),
            }),
            seq: AtomicU64::new(0),
            changed: Notify::new(),
            max_steps: max_steps.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<J>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `job` (its first step runs at once); a job with the same key stays as it is.
    pub fn add(&self, job: J) {
        let key = job.key();
        {
            let mut queue = self.lock();
            if queue.jobs.contains_key(&key) {
                return;
            }
            queue.jobs.insert(key.clone(), Entry::new(job, None));
        }
        self.schedule(&key, SystemTime::now());
    }

    /// Adds every job of `jobs` (their first steps run at once) under one lock, waking the
    /// driver once: a start with a million sites queues a million jobs this way. Jobs whose
    /// key is queued already stay as they are.
    pub fn add_many(&self, jobs: impl IntoIterator<Item = J>) {
        let now = SystemTime::now();
        self.add_many_at(jobs.into_iter().map(|job| (job, now)));
    }

    /// Like [`add_many`](Self::add_many), each job's first step at the time given with it.
    /// The queue's lock is let go every [`ADD_BATCH`] jobs, so a step or a registration
    /// never waits for a million insertions.
    pub fn add_many_at(&self, jobs: impl IntoIterator<Item = (J, SystemTime)>) {
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let mut queue = self.lock();
            for (job, at) in jobs.by_ref().take(ADD_BATCH) {
                let key = job.key();
                if queue.jobs.contains_key(&key) {
                    continue;
                }
                let position = (at, self.seq.fetch_add(1, Ordering::Relaxed));
                queue
                    .jobs
                    .insert(key.clone(), Entry::new(job, Some(position)));
                queue.by_time.insert(position, key);
            }
        }
        self.changed.notify_one();
    }

    /// Removes the job `key`.
    pub fn remove(&self, key: &J::Key) {
        let mut queue = self.lock();
        if let Some(Entry {
            queued: Some(position),
            ..
        }) = queue.jobs.remove(key)
        {
            queue.by_time.remove(&position);
        }
    }

    /// Runs the job `key` now.
    pub fn wake(&self, key: &J::Key) {
        self.schedule(key, SystemTime::now());
    }

    /// Jobs in the queue.
    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts job `key` at `at`, unless it is already queued earlier.
    fn schedule(&self, key: &J::Key, at: SystemTime) {
        let position = (at, self.seq.fetch_add(1, Ordering::Relaxed));
        let mut queue = self.lock();
        let Some(entry) = queue.jobs.get_mut(key) else {
            return;
        };
        let old = entry.queued;
        if old.is_some_and(|old| old.0 <= at) {
            return;
        }
        entry.queued = Some(position);
        if let Some(old) = old {
            queue.by_time.remove(&old);
        }
        queue.by_time.insert(position, key.clone());
        drop(queue);
        self.changed.notify_one();
    }

    /// Takes every job due at `now` and marks it running (one whose step is still running is
    /// marked to run again when it ends); returns them and the next due moment.
    fn take_due(&self, now: SystemTime) -> (Vec<Due<J>>, Option<SystemTime>) {
        let mut queue = self.lock();
        let mut due = Vec::new();
        while let Some((&position, _)) = queue.by_time.first_key_value() {
            if position.0 > now {
                break;
            }
            let Some(key) = queue.by_time.remove(&position) else {
                break;
            };
            if let Some(entry) = queue.jobs.get_mut(&key) {
                entry.queued = None;
                if entry.running {
                    entry.rerun = true;
                } else {
                    entry.running = true;
                    due.push((key, entry.job.clone()));
                }
            }
        }
        let next = queue.by_time.first_key_value().map(|(p, _)| p.0);
        (due, next)
    }

    /// Drives the queue until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let steps = Arc::new(Semaphore::new(self.max_steps));
        loop {
            let changed = self.changed.notified();
            let (due, next) = self.take_due(SystemTime::now());
            for (key, job) in due {
                let Ok(permit) = steps.clone().acquire_owned().await else {
                    return;
                };
                let (scheduler, cancel) = (self.clone(), cancel.clone());
                tokio::spawn(async move {
                    let wake = job.clone().step(cancel.clone()).await;
                    drop(permit);
                    scheduler.after_step(key, job, wake, cancel);
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

    /// Marks the step of `key` ended; whether the job came due again meanwhile.
    fn step_ended(&self, key: &J::Key) -> bool {
        let mut queue = self.lock();
        let Some(entry) = queue.jobs.get_mut(key) else {
            return false;
        };
        entry.running = false;
        std::mem::take(&mut entry.rerun)
    }

    /// Puts a job back after a step.
    fn after_step(
        self: &Arc<Self>,
        key: J::Key,
        job: Arc<J>,
        wake: Wake,
        cancel: CancellationToken,
    ) {
        let rerun = self.step_ended(&key);
        let at = match wake {
            Wake::Never => return self.remove(&key),
            _ if rerun || job.urgent() => SystemTime::now(),
            Wake::At(at) => at,
            Wake::OnGate => {
                let scheduler = self.clone();
                tokio::spawn(async move {
                    if job.gate(cancel).await {
                        scheduler.wake(&key);
                    } else {
                        scheduler.remove(&key);
                    }
                });
                return;
            }
        };
        self.schedule(&key, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str);

    impl Job for Named {
        type Key = &'static str;
        fn key(&self) -> Self::Key {
            self.0
        }
        fn step(self: Arc<Self>, _cancel: CancellationToken) -> JobFuture<Wake> {
            Box::pin(async { Wake::Never })
        }
    }

    #[test]
    fn entries_come_out_in_time_order_and_the_earlier_wins() {
        let scheduler = Scheduler::new(4);
        scheduler.add(Named("a"));
        scheduler.add(Named("b"));
        scheduler.add(Named("a"));
        assert_eq!(scheduler.len(), 2);
        let now = SystemTime::now();
        let (due, _) = scheduler.take_due(now + Duration::from_secs(1));
        assert_eq!(due.len(), 2, "new jobs run at once");
        // Their steps end.
        assert!(!scheduler.step_ended(&"a") && !scheduler.step_ended(&"b"));

        scheduler.schedule(&"a", now + Duration::from_secs(60));
        scheduler.schedule(&"b", now + Duration::from_secs(30));
        // A later moment does not push back an earlier one; an earlier one replaces it.
        scheduler.schedule(&"b", now + Duration::from_secs(90));
        scheduler.schedule(&"a", now + Duration::from_secs(10));
        let (due, next) = scheduler.take_due(now + Duration::from_secs(20));
        assert_eq!(due.iter().map(|(k, _)| *k).collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(next, Some(now + Duration::from_secs(30)));

        // A removed job is gone from the queue and the count.
        scheduler.remove(&"b");
        assert_eq!(scheduler.len(), 1);
        let (due, next) = scheduler.take_due(now + Duration::from_secs(3600));
        assert!(due.is_empty() && next.is_none());
        // Waking a job whose step runs (`a`, taken above) twice: it runs once more, when
        // that step ends.
        scheduler.wake(&"a");
        scheduler.wake(&"a");
        let (due, _) = scheduler.take_due(SystemTime::now());
        assert!(due.is_empty());
        assert!(scheduler.step_ended(&"a"));
        assert!(!scheduler.step_ended(&"a"));
    }

    #[test]
    fn many_jobs_are_added_at_once_and_a_queued_one_stays_as_it_is() {
        let scheduler = Scheduler::new(4);
        scheduler.add(Named("a"));
        let (due, _) = scheduler.take_due(SystemTime::now() + Duration::from_secs(1));
        assert_eq!(due.len(), 1);
        let later = SystemTime::now() + Duration::from_secs(60);
        scheduler.schedule(&"a", later);
        scheduler.add_many([Named("a"), Named("b"), Named("c"), Named("b")]);
        assert_eq!(scheduler.len(), 3);
        let (due, next) = scheduler.take_due(SystemTime::now() + Duration::from_secs(1));
        let mut keys: Vec<&str> = due.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            vec!["b", "c"],
            "new jobs run at once; a keeps its moment"
        );
        assert_eq!(next, Some(later));
    }

    #[test]
    fn a_job_due_while_its_step_runs_runs_again_once_it_ends_never_twice_at_once() {
        let scheduler = Scheduler::new(4);
        scheduler.add(Named("a"));
        let (due, _) = scheduler.take_due(SystemTime::now());
        assert_eq!(due.len(), 1);
        // Woken while its step runs: not handed out a second time…
        scheduler.wake(&"a");
        let (due, next) = scheduler.take_due(SystemTime::now());
        assert!(due.is_empty());
        assert_eq!(next, None);
        // …but its step's end says to run it again.
        assert!(scheduler.step_ended(&"a"));
        assert!(!scheduler.step_ended(&"a"), "once");
        scheduler.wake(&"a");
        assert_eq!(scheduler.take_due(SystemTime::now()).0.len(), 1);
    }

    #[test]
    fn jobs_added_with_their_moment_wait_for_it() {
        let scheduler = Scheduler::new(4);
        let now = SystemTime::now();
        let (soon, later) = (now + Duration::from_secs(5), now + Duration::from_secs(60));
        scheduler.add_many_at([
            (Named("late"), later),
            (Named("due"), now),
            (Named("soon"), soon),
        ]);
        let (due, next) = scheduler.take_due(now);
        assert_eq!(due.iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["due"]);
        assert_eq!(next, Some(soon));
        scheduler.wake(&"late");
        let (due, next) = scheduler.take_due(SystemTime::now());
        assert_eq!(
            due.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            ["late"],
            "woken early"
        );
        assert_eq!(next, Some(soon));
    }

    #[tokio::test]
    async fn the_driver_runs_due_steps_until_they_are_done() {
        let scheduler = Arc::new(Scheduler::new(2));
        for name in ["x", "y", "z"] {
            scheduler.add(Named(name));
        }
        let cancel = CancellationToken::new();
        let driver = tokio::spawn(scheduler.clone().run(cancel.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !scheduler.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "jobs left: {}",
                scheduler.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cancel.cancel();
        driver.await.unwrap();
    }
}
