//! The same CPU-bound job (thumbnails of generated images: blur, downscale, checksum) run sequentially, on a thread pool, and on a process pool, with a
//! timing table; then what only processes can do: survive a task that crashes.
//!
//! ```text
//! cargo run --release --example threads_vs_processes
//! ```

use std::time::{Duration, Instant};

use concurrent_futures::{Executor, ProcessPoolExecutor, TaskError, ThreadPoolExecutor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Image {
    id: u32,
    width: usize,
    pixels: Vec<u8>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Stats {
    id: u32,
    thumb_len: usize,
    checksum: u64,
}

fn generate(id: u32, width: usize) -> Image {
    let mut x = u64::from(id) * 0x9E37_79B9 + 1;
    let pixels = (0..width * width)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    Image { id, width, pixels }
}

/// Blurs (3x3 box, 6 passes), downscales by 4, and checksums the result.
fn thumbnail(img: Image) -> Stats {
    let mut src = img.pixels;
    let mut w = img.width;
    for _ in 0..6 {
        let mut dst = src.clone();
        for y in 1..w - 1 {
            for x in 1..w - 1 {
                let mut s = 0u32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        s += u32::from(src[(y + dy - 1) * w + x + dx - 1]);
                    }
                }
                dst[y * w + x] = (s / 9) as u8;
            }
        }
        src = dst;
    }
    for _ in 0..2 {
        let tw = w / 2;
        let mut dst = vec![0u8; tw * tw];
        for y in 0..tw {
            for x in 0..tw {
                let s: u32 = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .map(|(dy, dx)| u32::from(src[(2 * y + dy) * w + 2 * x + dx]))
                    .sum();
                dst[y * tw + x] = (s / 4) as u8;
            }
        }
        src = dst;
        w = tw;
    }
    let checksum = src
        .iter()
        .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    Stats {
        id: img.id,
        thumb_len: src.len(),
        checksum,
    }
}

fn stuck(_: ()) -> u8 {
    loop {
        std::thread::sleep(Duration::from_secs(1)); // a call that never returns
    }
}

fn crashes(_: ()) -> u8 {
    std::process::abort() // stands in for a segfault in a C library
}

/// Crashes on one image, as a C decoder might on one bad file.
fn fragile(id: u32) -> u32 {
    if id == 13 {
        std::process::abort();
    }
    id * 2
}

/// One task: make image `id` and thumbnail it (only two numbers cross to the worker).
fn job((id, width): (u32, usize)) -> Stats {
    thumbnail(generate(id, width))
}

fn run(pool: &impl Executor, n: u32, width: usize) -> Vec<Stats> {
    pool.map_fn(job, (0..n).map(|i| (i, width)))
        .map(Result::unwrap)
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    concurrent_futures::init(); // worker processes start here and never get further

    let (n, width) = (64, 512);
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());

    let start = Instant::now();
    let expected: Vec<Stats> = (0..n).map(|i| job((i, width))).collect();
    let sequential = start.elapsed();

    let threads = ThreadPoolExecutor::builder().max_workers(cpus).build()?;
    let start = Instant::now();
    assert_eq!(run(&threads, n, width), expected);
    let on_threads = start.elapsed();

    let processes = ProcessPoolExecutor::builder().max_workers(cpus).build()?;
    let start = Instant::now();
    assert_eq!(run(&processes, n, width), expected); // the same call, one line changed
    let on_processes = start.elapsed();

    println!("{n} thumbnails of {width}x{width} images on {cpus} cores\n");
    println!("{:<22} {:>10} {:>8}", "mode", "seconds", "speedup");
    for (mode, t) in [
        ("sequential", sequential),
        ("ThreadPoolExecutor", on_threads),
        ("ProcessPoolExecutor", on_processes),
    ] {
        println!(
            "{mode:<22} {:>10.3} {:>7.2}x",
            t.as_secs_f64(),
            sequential.as_secs_f64() / t.as_secs_f64()
        );
    }

    // What only processes give: a crashing task fails alone and the pool goes on.
    let crash = processes.submit(crashes, ())?;
    let after = processes.submit(thumbnail, generate(999, 64))?;
    match crash.result() {
        Err(TaskError::WorkerDied(how)) => println!("\na crashing task failed alone: worker {how}"),
        other => println!("\nunexpected: {other:?}"),
    }
    println!(
        "and the pool kept serving: {:?}",
        after
            .result_timeout(Duration::from_secs(30))
            .map_err(|e| e.to_string())?
    );

    // In a chunked map, a crash fails only its own item: the rest of its chunk is run again
    // one by one, so there is still one result per input item, in order.
    let results: Vec<_> = processes.map(fragile, 0..32).chunk_size(8).collect();
    let failed: Vec<(usize, String)> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e.to_string())))
        .collect();
    println!(
        "map over 32 items in chunks of 8, item 13 crashes: {} results, {} ok, failed: {failed:?}",
        results.len(),
        results.iter().filter(|r| r.is_ok()).count()
    );
    assert_eq!((results.len(), failed.len()), (32, 1));

    // And a running task can be killed on request (Python's cancel() cannot): its worker is
    // replaced, nothing else is touched.
    let hung = processes.submit(stuck, ())?;
    while !hung.running() {
        std::thread::sleep(Duration::from_millis(1));
    }
    processes.kill_task(&hung);
    println!("a stuck task, killed on request: {:?}", hung.result());
    Ok(())
}
