//! A site's origins: round-robin selection that skips an origin for a while after it refused
//! a connection. Lock-free: a counter and one timestamp per origin.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config::OriginUrl;

struct Origin {
    url: OriginUrl,
    /// Milliseconds since `epoch()` until which the origin is skipped; 0 = up.
    down_until_ms: AtomicU64,
}

/// The origins of one site.
pub struct OriginPool {
    origins: Box<[Origin]>,
    next: AtomicUsize,
    down_for: Duration,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl OriginPool {
    pub fn new(urls: &[OriginUrl], down_for: Duration) -> Self {
        Self {
            origins: urls
                .iter()
                .map(|url| Origin {
                    url: url.clone(),
                    down_until_ms: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            down_for,
        }
    }

    pub fn len(&self) -> usize {
        self.origins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// The next origin in turn that is up and is not `avoid`; when every candidate is down,
    /// the next one in turn anyway (better a try than a certain 502).
    pub fn pick(&self, avoid: Option<usize>) -> Option<(usize, &OriginUrl)> {
        let n = self.origins.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let candidates = (0..n)
            .map(|i| (start + i) % n)
            .filter(|&i| Some(i) != avoid || n == 1);
        let mut fallback = None;
        for i in candidates {
            if self.origins[i].down_until_ms.load(Ordering::Relaxed) <= now {
                return Some((i, &self.origins[i].url));
            }
            fallback.get_or_insert(i);
        }
        fallback.map(|i| (i, &self.origins[i].url))
    }

    /// Skips origin `index` for the configured time.
    pub fn mark_down(&self, index: usize) {
        if let Some(origin) = self.origins.get(index) {
            let until = now_ms()
                .saturating_add(u64::try_from(self.down_for.as_millis()).unwrap_or(u64::MAX));
            origin.down_until_ms.store(until, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: u16) -> OriginPool {
        let urls: Vec<OriginUrl> = (0..n)
            .map(|i| OriginUrl {
                authority: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
            })
            .collect();
        OriginPool::new(&urls, Duration::from_secs(60))
    }

    #[test]
    fn round_robin_skips_down_origins() {
        let p = pool(3);
        let picks: Vec<usize> = (0..6).map(|_| p.pick(None).unwrap().0).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        p.mark_down(1);
        let picks: Vec<usize> = (0..4).map(|_| p.pick(None).unwrap().0).collect();
        assert!(!picks.contains(&1), "{picks:?}");
    }

    #[test]
    fn avoid_and_all_down_fallback() {
        let p = pool(2);
        for _ in 0..4 {
            assert_eq!(p.pick(Some(0)).unwrap().0, 1);
        }
        p.mark_down(0);
        p.mark_down(1);
        assert!(p.pick(None).is_some());
        let single = pool(1);
        assert_eq!(single.pick(Some(0)).unwrap().0, 0);
    }
}
