//! `map` with a deadline measured from the call: results in input order until the
//! deadline, then one timeout error, and the tasks that had not started are cancelled.
//!
//! ```text
//! cargo run --release --example map_timeout
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use concurrent_futures::{MapError, ThreadPoolExecutor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = ThreadPoolExecutor::builder().max_workers(4).build()?;
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();

    // Item i takes i * 40 ms; the whole map gets 500 ms.
    let work = move |i: u64| {
        s.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(i * 40));
        i * i
    };
    let start = Instant::now();
    for (i, result) in pool
        .map(work, 0..40)
        .buffer_size(8)
        .timeout(Duration::from_millis(500))
        .enumerate()
    {
        match result {
            Ok(square) => println!("{:>7.0?}  item {i:>2} -> {square}", start.elapsed()),
            Err(MapError::Timeout) => println!("{:>7.0?}  timed out at item {i}", start.elapsed()),
            Err(e) => println!("{:>7.0?}  item {i:>2} failed: {e}", start.elapsed()),
        }
    }
    pool.shutdown();
    println!(
        "{} of 40 tasks ever started: the input was read lazily, and what was queued at the \
         deadline was cancelled",
        started.load(Ordering::SeqCst)
    );
    Ok(())
}
