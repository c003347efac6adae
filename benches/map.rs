//! `map` without tuning (issue 20): the default chunking against every fixed chunk size and
//! rayon, per executor, in the same run (BENCHMARKS.md, "map without tuning").
//!
//! ```text
//! cargo bench -p concurrent-futures-benches --bench map                    # everything
//! cargo bench -p concurrent-futures-benches --bench map -- threads uneven  # some groups
//! ```
//!
//! Groups: `threads` (the thread pool, as many workers as cores, against rayon's
//! `par_iter().map().collect()` on a pool of as many threads), `processes` (4 worker
//! processes), `redis` (a private `redis-server` and 2 worker processes of one task slot
//! each), `uneven` (40 items sleeping a fixed pseudo-random 0-40 ms each, 2 workers, every
//! executor) and `first` (time to the first result of a 100,000-item map of tiny items,
//! every executor). Each row runs its variants in rounds (`CF_BENCH_ROUNDS`, default 5), in
//! an order that rotates each round, and reports the median time over the rounds with its
//! spread, and the ratio of the default to the best fixed chunk size (the median of the
//! per-round ratios).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use concurrent_futures::redis::{RedisExecutor, RedisWorker, Tasks};
use concurrent_futures::{ProcessPoolExecutor, ThreadPoolExecutor};

#[path = "../tests/redis_server/mod.rs"]
mod redis_server;

fn double_plus_one(x: u64) -> u64 {
    x * 2 + 1
}

fn square(x: u64) -> u64 {
    x * x
}

fn noop(x: u64) -> u64 {
    x
}

/// Sleeps the item's own fixed pseudo-random 0-40 ms.
fn uneven(i: u64) -> u64 {
    let ms = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) % 41;
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn tasks() -> Tasks {
    Tasks::new()
        .add("double_plus_one", double_plus_one)
        .add("noop", noop)
        .add("uneven", uneven)
}

/// The chunk sizes each default is compared with (`None`: the default).
const FIXED: [usize; 5] = [1, 10, 100, 1_000, 10_000];

/// One row: each variant's time per round, in the same rounds.
struct Row {
    title: String,
    variants: Vec<String>,
    /// `samples[v][round]`, seconds.
    samples: Vec<Vec<f64>>,
}

/// Runs `run(variant)` for every variant, `rounds` times, in an order that rotates each
/// round, and returns the row of times.
fn rounds(
    title: &str,
    variants: &[String],
    rounds: usize,
    mut run: impl FnMut(usize) -> Duration,
) -> Row {
    let mut samples = vec![Vec::new(); variants.len()];
    for r in 0..rounds {
        for k in 0..variants.len() {
            let v = (k + r) % variants.len();
            samples[v].push(run(v).as_secs_f64());
        }
    }
    Row {
        title: title.to_owned(),
        variants: variants.to_vec(),
        samples,
    }
}

fn median(mut s: Vec<f64>) -> f64 {
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn ms(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{:.0}", secs * 1e3)
    } else if secs >= 0.01 {
        format!("{:.1}", secs * 1e3)
    } else {
        format!("{:.3}", secs * 1e3)
    }
}

/// Prints a row as a table: every variant's median time (min..max), and the default's ratio
/// to the best fixed chunk size, and the ratio of each pair of named variants (`compare`).
fn report(row: &Row, compare: &[(&str, &str)]) {
    println!("\n### {}\n", row.title);
    println!("| variant | median ms (min..max) | default / this, median of the rounds |");
    println!("| --- | ---: | ---: |");
    let default = &row.samples[0];
    for (v, name) in row.variants.iter().enumerate() {
        let s = &row.samples[v];
        let min = s.iter().copied().fold(f64::INFINITY, f64::min);
        let max = s.iter().copied().fold(0.0, f64::max);
        let ratio = median(default.iter().zip(s).map(|(d, x)| d / x).collect());
        println!(
            "| {name} | {} ({}..{}) | {ratio:.2}x |",
            ms(median(s.clone())),
            ms(min),
            ms(max)
        );
    }
    // Against the best fixed chunk size of each round.
    let fixed: Vec<usize> = (0..row.variants.len())
        .filter(|&v| row.variants[v].starts_with("chunk_size"))
        .collect();
    if !fixed.is_empty() {
        let rounds = default.len();
        let ratios: Vec<f64> = (0..rounds)
            .map(|r| {
                let best = fixed
                    .iter()
                    .map(|&v| row.samples[v][r])
                    .fold(f64::INFINITY, f64::min);
                default[r] / best
            })
            .collect();
        println!(
            "\ndefault / best fixed chunk size in the same round: {:.2}x (median; {:.2}x..{:.2}x)",
            median(ratios.clone()),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max)
        );
    }
    let at = |name: &str| row.variants.iter().position(|n| n == name);
    for (a, b) in compare {
        if let (Some(x), Some(y)) = (at(a), at(b)) {
            let ratio = median(
                row.samples[x]
                    .iter()
                    .zip(&row.samples[y])
                    .map(|(p, q)| p / q)
                    .collect(),
            );
            println!("{a} / {b}: {ratio:.2}x (median of the per-round ratios)");
        }
    }
}

fn variants(fixed: &[usize], extra: &[&str]) -> Vec<String> {
    let mut v = vec!["default".to_owned()];
    v.extend(fixed.iter().map(|n| format!("chunk_size({n})")));
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

fn chunk_of(variant: &str) -> Option<usize> {
    variant
        .strip_prefix("chunk_size(")
        .and_then(|s| s.strip_suffix(')'))
        .and_then(|s| s.parse().ok())
}

// ---------------------------------------------------------------------------------------

fn threads(n_rounds: usize, cores: usize) {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(cores)
        .build()
        .unwrap();
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(cores)
        .build()
        .unwrap();
    for (title, n, f) in [
        (
            "Thread pool: `x * 2 + 1` over 1,000,000 items",
            1_000_000u64,
            double_plus_one as fn(u64) -> u64,
        ),
        ("Thread pool: `x * x` over 500,000 items", 500_000, square),
    ] {
        let vs = variants(&FIXED, &[COLLECT, "rayon par_iter", SLICE, RAYON_SLICE]);
        // The slice both slice variants read, made outside the timing.
        let input: Vec<u64> = (0..n).collect();
        let row = rounds(title, &vs, n_rounds, |v| {
            // All collect the results into a vector, in input order.
            let t = Instant::now();
            let out: Vec<u64> = if vs[v] == "rayon par_iter" {
                use rayon::prelude::*;
                rayon.install(|| (0..n).into_par_iter().map(f).collect())
            } else if vs[v] == RAYON_SLICE {
                use rayon::prelude::*;
                rayon.install(|| input.par_iter().map(|x| f(*x)).collect())
            } else if vs[v] == SLICE {
                pool.map_slice(|x| f(*x), &input).unwrap()
            } else if vs[v] == COLLECT {
                pool.map(f, 0..n).try_collect_vec().unwrap()
            } else {
                let m = pool.map(f, 0..n);
                let m = match chunk_of(&vs[v]) {
                    Some(c) => m.chunk_size(c),
                    None => m,
                };
                m.collect::<Result<_, _>>().unwrap()
            };
            let d = t.elapsed();
            assert!(out.iter().copied().eq((0..n).map(f)));
            d
        });
        report(
            &row,
            &[
                ("default", "rayon par_iter"),
                (COLLECT, "rayon par_iter"),
                (SLICE, RAYON_SLICE),
            ],
        );
    }
}

/// The default chunking, collected by `Map::try_collect_vec` instead of `collect`.
const COLLECT: &str = "default, try_collect_vec";
/// `ThreadPoolExecutor::map_slice` over the input as a slice, and rayon over the same slice.
const SLICE: &str = "map_slice";
const RAYON_SLICE: &str = "rayon par_iter over the slice";

fn processes(n_rounds: usize) {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(4)
        .build()
        .unwrap();
    // Every worker started before the first round.
    let warm: Vec<_> = (0..64).map(|i| pool.submit(noop, i).unwrap()).collect();
    for f in warm {
        f.result().unwrap();
    }
    for (title, n, f) in [
        (
            "Process pool, 4 workers: `x * x` over 100,000 items",
            100_000u64,
            square as fn(u64) -> u64,
        ),
        (
            "Process pool, 4 workers: `x * 2 + 1` over 1,000,000 items",
            1_000_000,
            double_plus_one,
        ),
    ] {
        let vs = variants(&FIXED, &[]);
        let row = rounds(title, &vs, n_rounds, |v| {
            let t = Instant::now();
            let m = pool.map(f, 0..n);
            let m = match chunk_of(&vs[v]) {
                Some(c) => m.chunk_size(c),
                None => m,
            };
            let sum: u64 = m.map(Result::unwrap).sum();
            let d = t.elapsed();
            assert_eq!(sum, (0..n).map(f).sum::<u64>());
            d
        });
        report(&row, &[]);
    }
}

struct Worker(Child);

impl Worker {
    fn start(url: &str, concurrency: usize) -> Worker {
        Worker(
            Command::new(std::env::current_exe().unwrap())
                .args(["--worker", url, &concurrency.to_string()])
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_setup(
    concurrency: usize,
) -> Option<(redis_server::RedisServer, [Worker; 2], RedisExecutor)> {
    if !redis_server::installed() {
        println!("\n(redis-server is not installed: the Redis rows are left out)");
        return None;
    }
    let server = redis_server::RedisServer::start("map-bench", false);
    let workers = [
        Worker::start(&server.url, concurrency),
        Worker::start(&server.url, concurrency),
    ];
    let ex = RedisExecutor::builder(&server.url, tasks())
        .build()
        .unwrap();
    for i in 0..100 {
        ex.submit(noop, i).unwrap().result().unwrap();
    }
    Some((server, workers, ex))
}

fn redis(n_rounds: usize) {
    let Some((_server, _workers, ex)) = redis_setup(1) else {
        return;
    };
    let vs = variants(&FIXED, &[]);
    let row = rounds(
        "Redis, 2 workers of one slot: a no-op over 50,000 items",
        &vs,
        n_rounds,
        |v| {
            let t = Instant::now();
            let m = ex.map(noop, 0..50_000u64);
            let m = match chunk_of(&vs[v]) {
                Some(c) => m.chunk_size(c),
                None => m,
            };
            let n = m.map(Result::unwrap).count();
            assert_eq!(n, 50_000);
            t.elapsed()
        },
    );
    report(&row, &[]);
    // One task per item over a million items would take over a minute a round.
    let vs = variants(&FIXED[2..], &[]);
    let row = rounds(
        "Redis, 2 workers of one slot: `x * 2 + 1` over 1,000,000 items (chunk sizes 1 and 10 left out: over a minute a round)",
        &vs,
        n_rounds,
        |v| {
            let t = Instant::now();
            let m = ex.map(double_plus_one, 0..1_000_000u64);
            let m = match chunk_of(&vs[v]) {
                Some(c) => m.chunk_size(c),
                None => m,
            };
            let sum: u64 = m.map(Result::unwrap).sum();
            assert_eq!(sum, 1_000_000u64 * 1_000_000);
            t.elapsed()
        },
    );
    report(&row, &[]);
}

fn uneven_items(n_rounds: usize) {
    let expected: u64 = (0..40)
        .map(|i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) % 41)
        .sum();
    let vs = vec!["default".to_owned(), "chunk_size(1)".to_owned()];
    let threads = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let with_slice = [vs.clone(), vec![SLICE.to_owned()]].concat();
    let input: Vec<u64> = (0..40).collect();
    let row = rounds(
        "Uneven slow items, thread pool of 2: 40 items of 0-40 ms",
        &with_slice,
        n_rounds,
        |v| {
            let t = Instant::now();
            if v == 2 {
                let out = threads.map_slice(|&i| uneven(i), &input).unwrap();
                assert_eq!(out.iter().sum::<u64>(), expected);
                return t.elapsed();
            }
            let m = threads.map(uneven, 0..40);
            let m = if v == 1 { m.chunk_size(1) } else { m };
            assert_eq!(m.map(Result::unwrap).sum::<u64>(), expected);
            t.elapsed()
        },
    );
    report(&row, &[(SLICE, "chunk_size(1)")]);
    let processes = ProcessPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let row = rounds(
        "Uneven slow items, process pool of 2: 40 items of 0-40 ms",
        &vs,
        n_rounds,
        |v| {
            let t = Instant::now();
            let m = processes.map(uneven, 0..40);
            let m = if v == 1 { m.chunk_size(1) } else { m };
            assert_eq!(m.map(Result::unwrap).sum::<u64>(), expected);
            t.elapsed()
        },
    );
    report(&row, &[]);
    if let Some((_server, _workers, ex)) = redis_setup(1) {
        let row = rounds(
            "Uneven slow items, Redis, 2 workers of one slot: 40 items of 0-40 ms",
            &vs,
            n_rounds,
            |v| {
                let t = Instant::now();
                let m = ex.map(uneven, 0..40);
                let m = if v == 1 { m.chunk_size(1) } else { m };
                assert_eq!(m.map(Result::unwrap).sum::<u64>(), expected);
                t.elapsed()
            },
        );
        report(&row, &[]);
    }
}

fn first_result(n_rounds: usize, cores: usize) {
    let vs = vec!["default".to_owned(), "chunk_size(1)".to_owned()];
    let threads = ThreadPoolExecutor::builder()
        .max_workers(cores)
        .build()
        .unwrap();
    let row = rounds(
        "Time to the first result, thread pool: 100,000 items of `x * 2 + 1`",
        &vs,
        n_rounds,
        |v| {
            let t = Instant::now();
            let m = threads.map(double_plus_one, 0..100_000);
            let mut m = if v == 1 { m.chunk_size(1) } else { m };
            assert_eq!(m.next(), Some(Ok(1)));
            t.elapsed()
        },
    );
    report(&row, &[]);
    let processes = ProcessPoolExecutor::builder()
        .max_workers(4)
        .build()
        .unwrap();
    for f in (0..64)
        .map(|i| processes.submit(noop, i).unwrap())
        .collect::<Vec<_>>()
    {
        f.result().unwrap();
    }
    let row = rounds(
        "Time to the first result, process pool of 4: 100,000 items of `x * 2 + 1`",
        &vs,
        n_rounds,
        |v| {
            let t = Instant::now();
            let m = processes.map(double_plus_one, 0..100_000);
            let mut m = if v == 1 { m.chunk_size(1) } else { m };
            assert_eq!(m.next(), Some(Ok(1)));
            t.elapsed()
        },
    );
    report(&row, &[]);
    if let Some((_server, _workers, ex)) = redis_setup(1) {
        let row = rounds(
            "Time to the first result, Redis, 2 workers of one slot: 100,000 items of `x * 2 + 1`",
            &vs,
            n_rounds,
            |v| {
                let t = Instant::now();
                let m = ex.map(double_plus_one, 0..100_000);
                let mut m = if v == 1 { m.chunk_size(1) } else { m };
                assert_eq!(m.next(), Some(Ok(1)));
                let d = t.elapsed();
                drop(m);
                // The tasks cancelled by the drop may still be leaving the queue.
                ex.flush().unwrap();
                d
            },
        );
        report(&row, &[]);
    }
}

fn main() {
    concurrent_futures::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        RedisWorker::builder(&args[1], tasks())
            .max_workers(args[2].parse().unwrap())
            .run()
            .unwrap();
        return;
    }
    let groups: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let on = |g: &str| groups.is_empty() || groups.contains(&g);
    let n_rounds = std::env::var("CF_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!("## map without tuning: {cores} cores, {n_rounds} rounds");
    if on("threads") {
        threads(n_rounds, cores);
    }
    if on("processes") {
        processes(n_rounds);
    }
    if on("redis") {
        redis(n_rounds);
    }
    if on("uneven") {
        uneven_items(n_rounds);
    }
    if on("first") {
        first_result(n_rounds, cores);
    }
}
