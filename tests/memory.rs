//! Memory that must stay flat over endless inputs, sampled from the process's resident set.

use concurrent_futures::ThreadPoolExecutor;

/// Resident set size in bytes, from `/proc/self/statm` (Linux); `None` elsewhere.
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn map_unordered_memory_stays_flat_over_ten_million_items() {
    let Some(_) = rss() else { return };
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let mut samples = Vec::new();
    let mut count = 0u64;
    for r in pool.map_unordered(|x: u64| x, 0..10_000_000u64) {
        r.unwrap();
        count += 1;
        if count % 1_000_000 == 0 {
            samples.push(rss().unwrap());
        }
    }
    assert_eq!(count, 10_000_000);
    // Warmed up after the first million; what was kept per item (16 bytes) would add 144 MB
    // over the other nine.
    let growth = samples.last().unwrap().saturating_sub(samples[0]);
    assert!(
        growth < 24 << 20,
        "RSS grew by {growth} bytes over 9 M items: {samples:?}"
    );
}

#[test]
fn ordered_map_memory_stays_flat_under_the_adaptive_chunk_size() {
    let Some(_) = rss() else { return };
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let mut samples = Vec::new();
    let mut count = 0u64;
    for r in pool.map(|x: u64| x ^ 1, 0..10_000_000u64) {
        assert_eq!(r, Ok(count ^ 1));
        count += 1;
        if count % 1_000_000 == 0 {
            samples.push(rss().unwrap());
        }
    }
    assert_eq!(count, 10_000_000);
    let growth = samples.last().unwrap().saturating_sub(samples[0]);
    assert!(
        growth < 24 << 20,
        "RSS grew by {growth} bytes over 9 M items: {samples:?}"
    );
}
