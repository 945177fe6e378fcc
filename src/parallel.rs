//! The start-up passes over every site (a million at the largest) spread over every core:
//! an ordered map over a list, in one contiguous chunk per core. Small lists stay on the
//! calling thread, where spawning would cost more than it saves.

/// Below this many items the work stays on the calling thread.
const WORTH_SPLITTING: usize = 1024;

/// How many threads the passes use: one per core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |p| p.get())
}

/// `items.map(f)` in order, computed on every core.
pub fn map_on_every_core<T: Send, U: Send>(items: Vec<T>, f: impl Fn(T) -> U + Sync) -> Vec<U> {
    if items.len() < WORTH_SPLITTING {
        return items.into_iter().map(f).collect();
    }
    map_each_on_every_core(items, f)
}

/// [`map_on_every_core`] for a few items that are each much work (the routing table's
/// shards): split over the cores however short the list.
pub fn map_each_on_every_core<T: Send, U: Send>(
    items: Vec<T>,
    f: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    let threads = cores();
    if items.len() < 2 || threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let total = items.len();
    let chunk = total.div_ceil(threads);
    let mut parts: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = items.into_iter();
    loop {
        let part: Vec<T> = rest.by_ref().take(chunk).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| scope.spawn(move || part.into_iter().map(f).collect::<Vec<U>>()))
            .collect();
        let mut out = Vec::with_capacity(total);
        for handle in handles {
            out.extend(
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_order_of_large_and_small_lists() {
        for n in [0, 3, WORTH_SPLITTING, 10 * WORTH_SPLITTING + 7] {
            let items: Vec<usize> = (0..n).collect();
            let doubled = map_on_every_core(items, |i| i * 2);
            assert_eq!(doubled, (0..n).map(|i| i * 2).collect::<Vec<_>>());
        }
        for n in [0, 1, 2, 3, 257] {
            let items: Vec<usize> = (0..n).collect();
            let doubled = map_each_on_every_core(items, |i| i * 2);
            assert_eq!(doubled, (0..n).map(|i| i * 2).collect::<Vec<_>>());
        }
    }
}
