//! How many items the next chunk of a map takes when the user did not say (`chunk_size`).
//!
//! A task costs the executor a fixed overhead (a queue push and a thread wake-up, a message
//! to a worker process, a Redis round trip) on top of its items' own work. One item per task
//! wastes most of the time on the overhead when items are cheap; one big chunk per worker
//! wastes it on imbalance when they are slow or uneven, and delays the first result. The
//! [`Sizer`] measures, as the map's results come back, the *pool time per item*: the time
//! between two completed chunks divided by the first one's items, over the last few chunks.
//! That is the executor's throughput, overhead included, whatever the number of workers.
//! Each chunk then takes as many items as fill [`TARGET`] of pool time, but at most twice the
//! previous chunk, so that:
//!
//! - the first chunks take one item each (nothing is measured yet): the first result comes
//!   as early as with `chunk_size(1)`;
//! - cheap items grow the chunks geometrically until a chunk is worth `TARGET` (about 2 ms
//!   of the whole pool's time), where the overhead is a small share of it;
//! - items that already take `TARGET` or more of pool time each stay one per task, so slow
//!   or uneven items are spread over the workers as finely as Python's default spreads them;
//! - a slowdown shrinks the chunks at once (the measure is of the last few chunks).
//!
//! Chunks are also kept under a memory bound (items in flight) and under the executor's
//! message limit ([`Limit`]), which the executor feeds with the encoded size of the items.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The pool time a chunk is sized to take: long enough that a Redis round trip (the
/// largest per-task overhead, about 100 µs of pool time) is a small share of it, short
/// enough that the last chunks of a map leave no worker idle for long.
pub(crate) const TARGET: Duration = Duration::from_millis(2);

/// The most items a chunk takes, whatever the measure says.
pub(crate) const MAX_CHUNK: usize = 1 << 16;

/// The most bytes a chunk's items, or its results, take in memory (`size_of`, so not what
/// they point to). Past a point, larger chunks of tiny items are slower, not faster: their
/// vectors leave the caches. Measured with `x * 2 + 1` over a million `u64`s on the thread
/// pool (2 cores, medians of 5): 1,000-item chunks 7.1 ms, 65,536 items (2 MiB of results)
/// about 14 ms; with this bound at 64 KiB 5.0-6.9 ms, at 256 KiB 3.9-4.3 ms.
pub(crate) const CHUNK_BYTES: usize = 256 << 10;

/// The most items in flight (over all the chunks of the buffer) for a chunk to grow: a map
/// over an endless input keeps its memory bounded by this many items.
pub(crate) const MAX_IN_FLIGHT: usize = 1 << 20;

/// How many completed chunks the measure looks back on.
const RECENT: usize = 8;

/// Chooses each chunk's size from the pool time per item measured on the last chunks.
#[derive(Debug, Clone)]
pub(crate) struct Sizer {
    /// The size of the last chunk given.
    last: usize,
    /// When the last chunk completed (or the map started).
    mark: Option<Instant>,
    /// The items and the pool time of the last `RECENT` completed chunks.
    recent: [(usize, Duration); RECENT],
    /// How many of `recent` are filled, up to `RECENT`; the next slot to write.
    filled: usize,
    next: usize,
}

impl Sizer {
    pub(crate) fn new() -> Sizer {
        Sizer {
            last: 1,
            mark: None,
            recent: [(0, Duration::ZERO); RECENT],
            filled: 0,
            next: 0,
        }
    }

    /// The map submits its first chunk: pool time counts from now.
    pub(crate) fn start(&mut self) {
        if self.mark.is_none() {
            self.mark = Some(Instant::now());
        }
    }

    /// A chunk of `items` completed (was taken by the map) at `now`.
    pub(crate) fn done(&mut self, items: usize, now: Instant) {
        let since = self.mark.replace(now).unwrap_or(now);
        self.recent[self.next] = (items, now.saturating_duration_since(since));
        self.next = (self.next + 1) % RECENT;
        self.filled = (self.filled + 1).min(RECENT);
    }

    /// The pool time per item over the last chunks; `None` before the first completes.
    pub(crate) fn per_item(&self) -> Option<Duration> {
        if self.filled == 0 {
            return None;
        }
        let (items, time) = self.recent[..self.filled]
            .iter()
            .fold((0usize, Duration::ZERO), |(n, t), (i, d)| (n + i, t + *d));
        Some(time / u32::try_from(items.max(1)).unwrap_or(u32::MAX))
    }

    /// The size of the next chunk: as many items as fill `target` of pool time, at most
    /// twice the last chunk, at most `max` (memory and message limits), at least 1.
    pub(crate) fn next_size(&mut self, max: usize, target: Duration) -> usize {
        let want = match self.per_item() {
            None => 1,
            Some(per_item) => {
                let per_item = per_item.as_nanos().max(1);
                usize::try_from(target.as_nanos() / per_item).unwrap_or(usize::MAX)
            }
        };
        let n = want
            .min(self.last.saturating_mul(2))
            .min(max)
            .clamp(1, MAX_CHUNK);
        self.last = n;
        n
    }
}

/// What an executor that sends its chunks as messages says about them: the largest chunk
/// that fits its message limit (it sees each chunk's encoded size and says how many items
/// fit in half its limit, so that a chunk of items larger than the ones measured so far
/// still fits), and the pool time a chunk is sized to (more than [`TARGET`] where the
/// per-task overhead is larger).
#[derive(Debug)]
pub(crate) struct Limit {
    bytes: usize,
    pub(crate) target: Duration,
    /// The largest encoded size per item seen so far, in bytes.
    per_item: AtomicUsize,
}

// Made only by the executors that send chunks as messages (processes, Redis).
#[cfg_attr(
    not(any(all(unix, feature = "process"), feature = "redis")),
    allow(dead_code)
)]
impl Limit {
    /// A limit of `bytes` per message.
    pub(crate) fn new(bytes: usize) -> Limit {
        Limit {
            bytes,
            target: TARGET,
            per_item: AtomicUsize::new(1),
        }
    }

    /// Chunks sized to `target` of pool time instead of [`TARGET`].
    #[cfg(feature = "redis")]
    pub(crate) fn with_target(mut self, target: Duration) -> Limit {
        self.target = target;
        self
    }

    /// A chunk of `items` was `bytes` long once encoded.
    pub(crate) fn saw(&self, items: usize, bytes: usize) {
        let per_item = bytes.div_ceil(items.max(1)).max(1);
        self.per_item.fetch_max(per_item, Ordering::Relaxed);
    }

    /// How many items a chunk may take.
    pub(crate) fn items(&self) -> usize {
        (self.bytes / 2 / self.per_item.load(Ordering::Relaxed).max(1)).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(per_item: Duration, chunks: usize) -> Sizer {
        let mut s = Sizer::new();
        s.start();
        let mut now = s.mark.unwrap();
        for _ in 0..chunks {
            let n = s.next_size(usize::MAX, TARGET);
            now += per_item * u32::try_from(n).unwrap();
            s.done(n, now);
        }
        s
    }

    #[test]
    fn the_first_chunk_takes_one_item() {
        assert_eq!(Sizer::new().next_size(usize::MAX, TARGET), 1);
    }

    #[test]
    fn cheap_items_grow_geometrically_to_the_target() {
        let mut s = fed(Duration::from_nanos(100), 40);
        // 2 ms of pool time at 100 ns an item.
        assert_eq!(s.next_size(usize::MAX, TARGET), 20_000);
        // Never more than twice the last one on the way.
        let mut s = fed(Duration::from_nanos(100), 3);
        assert!(s.next_size(usize::MAX, TARGET) <= 8);
    }

    #[test]
    fn slow_items_stay_one_per_task() {
        let mut s = fed(Duration::from_millis(3), 20);
        assert_eq!(s.next_size(usize::MAX, TARGET), 1);
    }

    #[test]
    fn a_slowdown_shrinks_the_chunks_at_once() {
        let mut s = fed(Duration::from_nanos(100), 40);
        let mut now = Instant::now() + Duration::from_secs(1);
        s.done(1, now);
        for _ in 0..RECENT {
            now += Duration::from_millis(5);
            s.done(1, now);
        }
        assert_eq!(s.next_size(usize::MAX, TARGET), 1);
    }

    #[test]
    fn limits_cap_the_size() {
        let mut s = fed(Duration::from_nanos(1), 40);
        assert_eq!(s.next_size(usize::MAX, TARGET), MAX_CHUNK);
        assert_eq!(s.next_size(100, TARGET), 100);
        let limit = Limit::new(1000);
        limit.saw(10, 100); // 10 bytes an item
        assert_eq!(limit.items(), 50);
        limit.saw(1, 400); // one large item: half the limit holds one
        assert_eq!(limit.items(), 1);
    }
}
