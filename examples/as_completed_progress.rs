//! Downloads (simulated) finishing in any order, a progress bar that moves as each one
//! completes (indicatif, which draws nothing when stderr is not a terminal), and a per-item
//! error that does not stop the rest.
//!
//! ```text
//! cargo run --release --example as_completed_progress
//! ```

use std::time::{Duration, Instant};

use concurrent_futures::{ThreadPoolExecutor, as_completed};
use indicatif::{ProgressBar, ProgressStyle};

/// Pretends to fetch a page: sleeps a pseudo-random time, and fails for one URL.
fn fetch(url: &str) -> Result<usize, String> {
    let h = url
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    std::thread::sleep(Duration::from_millis(20 + h % 180));
    if url.ends_with("/13") {
        return Err(format!("{url}: 503 Service Unavailable"));
    }
    Ok(1000 + (h % 9000) as usize)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let urls: Vec<String> = (0..40)
        .map(|i| format!("https://example.test/page/{i}"))
        .collect();
    let pool = ThreadPoolExecutor::builder()
        .max_workers(8)
        .thread_name_prefix("fetch")
        .build()?;
    let start = Instant::now();

    let futures: Vec<_> = urls
        .iter()
        .map(|url| {
            let u = url.clone();
            (
                url.clone(),
                pool.submit(move || fetch(&u)).expect("pool is running"),
            )
        })
        .collect();

    let (mut bytes, mut failed) = (0, Vec::new());
    let total = futures.len();
    let completions = as_completed(futures).timeout(Duration::from_secs(30));
    // The iterator knows how many futures it may still yield: the bar's length.
    let bar = ProgressBar::new(completions.size_hint().1.unwrap_or(total) as u64);
    bar.set_style(
        ProgressStyle::with_template("[{bar:30}] {pos:>2}/{len} {msg}")?.progress_chars("#>."),
    );
    for item in completions {
        let (url, fut) = item?;
        match fut.result()? {
            Ok(n) => bytes += n,
            Err(e) => failed.push(e),
        }
        bar.set_message(url);
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "fetched {} pages, {bytes} bytes, in {:.2?} with 8 threads",
        total - failed.len(),
        start.elapsed()
    );
    for e in failed {
        println!("failed: {e}");
    }
    Ok(())
}
