//! Renewal timing, as pure arithmetic: when a certificate's renewal window opens, the
//! randomised moment inside it at which the renewal runs, and how long to wait after a
//! failure. Nothing assumes a 90-day or 1-year lifetime: a 6-day and a 200-day certificate
//! both get a window of a third of their life at most.

use std::time::{Duration, SystemTime};

/// Length of the renewal window: min(`renew_before`, one third of the lifetime).
pub fn window_len(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Duration,
) -> Duration {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    renew_before.min(lifetime / 3)
}

/// When the renewal window opens: `not_after` minus the window length.
pub fn window_start(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Duration,
) -> SystemTime {
    not_after
        .checked_sub(window_len(not_before, not_after, renew_before))
        .unwrap_or(not_before)
}

/// The moment to renew: somewhere in the first half of the window, `spread` ∈ [0, 1) picking
/// where, so thousands of certificates issued together do not renew in the same second and
/// the second half is left for retries.
pub fn renew_at(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Duration,
    spread: f64,
) -> SystemTime {
    let len = window_len(not_before, not_after, renew_before);
    window_start(not_before, not_after, renew_before) + len.mul_f64(spread.clamp(0.0, 1.0) / 2.0)
}

/// A moment inside a CA-suggested window (ACME Renewal Information), `spread` ∈ [0, 1).
pub fn inside(start: SystemTime, end: SystemTime, spread: f64) -> SystemTime {
    let len = end.duration_since(start).unwrap_or(Duration::ZERO);
    start + len.mul_f64(spread.clamp(0.0, 1.0))
}

/// Delay before retry number `attempts` (1 = after the first failure): `min` doubled per
/// failure up to `max`, then scaled by `jitter` ∈ [0, 1) into [75 %, 125 %) of that.
pub fn backoff(attempts: u32, min: Duration, max: Duration, jitter: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    let base = min.saturating_mul(1u32 << doublings).min(max);
    base.mul_f64(0.75 + jitter.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn t(days: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + DAY * u32::try_from(days).unwrap()
    }

    #[test]
    fn window_is_a_third_of_short_lifetimes_and_capped_for_long_ones() {
        // 90-day certificate, 30 days before: min(30, 30) = 30.
        assert_eq!(window_len(t(0), t(90), 30 * DAY), 30 * DAY);
        // 6-day certificate: 2 days.
        assert_eq!(window_len(t(0), t(6), 30 * DAY), 2 * DAY);
        // 200-day certificate: 30 days.
        assert_eq!(window_len(t(0), t(200), 30 * DAY), 30 * DAY);
        assert_eq!(window_start(t(0), t(200), 30 * DAY), t(170));
        // A one-minute certificate renews in its last 20 seconds.
        let start = SystemTime::UNIX_EPOCH;
        let end = start + Duration::from_secs(60);
        assert_eq!(window_len(start, end, 30 * DAY), Duration::from_secs(20));
        // Nonsense validity (end before start) gives an empty window, not a panic.
        assert_eq!(window_len(t(5), t(1), 30 * DAY), Duration::ZERO);
    }

    #[test]
    fn renewal_moment_is_in_the_first_half_of_the_window() {
        assert_eq!(renew_at(t(0), t(90), 30 * DAY, 0.0), t(60));
        assert!(renew_at(t(0), t(90), 30 * DAY, 0.999_999) < t(75));
        assert!(renew_at(t(0), t(90), 30 * DAY, 0.5) > t(60));
        assert_eq!(renew_at(t(0), t(90), 30 * DAY, 7.0), t(75));
        assert_eq!(inside(t(10), t(12), 0.5), t(11));
    }

    #[test]
    fn backoff_doubles_and_is_capped_with_jitter() {
        let (min, max) = (Duration::from_secs(10), Duration::from_secs(3600));
        assert_eq!(backoff(1, min, max, 0.5), Duration::from_secs(10));
        assert_eq!(backoff(2, min, max, 0.5), Duration::from_secs(20));
        assert_eq!(backoff(4, min, max, 0.5), Duration::from_secs(80));
        assert_eq!(backoff(40, min, max, 0.5), max);
        assert_eq!(backoff(1, min, max, 0.0), Duration::from_millis(7500));
        assert!(backoff(1, min, max, 0.999) < Duration::from_millis(12_500));
    }
}
