//! Three ways to map a million tiny items on the thread pool, and what each costs: the lazy
//! `map` collected item by item, the same map collected a chunk at a time
//! (`try_collect_vec`), and `map_slice`, where the workers write each result in place and
//! the closure may borrow from the caller.
//!
//! ```text
//! cargo run --release --example map_slice
//! ```

use std::time::{Duration, Instant};

use concurrent_futures::{MapError, ThreadPoolExecutor};

/// The median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() -> Result<(), MapError> {
    let pool = ThreadPoolExecutor::new();
    let n = 1_000_000u64;
    let input: Vec<u64> = (0..n).collect();
    let want: Vec<u64> = input.iter().map(|x| x * 2 + 1).collect();

    // Each form gives the same vector.
    let lazy: Vec<u64> = pool
        .map(|x: u64| x * 2 + 1, 0..n)
        .collect::<Result<_, _>>()?;
    let chunked = pool.map(|x: u64| x * 2 + 1, 0..n).try_collect_vec()?;
    let in_place = pool.map_slice(|x| x * 2 + 1, &input)?;
    assert!(lazy == want && chunked == want && in_place == want);

    println!(
        "{n} items of `x * 2 + 1` on {} workers, median of 21 runs:",
        pool.max_workers()
    );
    let t = median(21, || {
        let out: Result<Vec<u64>, MapError> = pool.map(|x: u64| x * 2 + 1, 0..n).collect();
        assert_eq!(out.map(|v| v.len()), Ok(want.len()));
    });
    println!("  map(..).collect()         {t:>10.2?}  (one result per next())");
    let t = median(21, || {
        let out = pool.map(|x: u64| x * 2 + 1, 0..n).try_collect_vec();
        assert_eq!(out.map(|v| v.len()), Ok(want.len()));
    });
    println!("  map(..).try_collect_vec() {t:>10.2?}  (a chunk at a time)");
    let t = median(21, || {
        let out = pool.map_slice(|x| x * 2 + 1, &input);
        assert_eq!(out.map(|v| v.len()), Ok(want.len()));
    });
    println!("  map_slice(.., &input)     {t:>10.2?}  (workers write in place)");
    let t = median(21, || {
        let out: Vec<u64> = input.iter().map(|x| x * 2 + 1).collect();
        assert_eq!(out.len(), want.len());
    });
    println!("  one thread, no pool       {t:>10.2?}");

    // `map_slice` borrows: the closure reads a table owned by `main`, with no `Arc`.
    let prices = [3u32, 5, 8, 13];
    let orders: Vec<(usize, u32)> = (0..10_000).map(|i| (i % 4, 1 + (i % 3) as u32)).collect();
    let totals = pool.map_slice(|&(item, qty)| prices[item] * qty, &orders)?;
    println!(
        "10,000 orders priced from a borrowed table: {} in all",
        totals.iter().map(|&t| u64::from(t)).sum::<u64>()
    );
    Ok(())
}
