//! Our executor against the peers a user would pick instead, every one in the same run.
//!
//! ```text
//! cargo bench --bench peers              # everything, a few minutes on 2 cores
//! cargo bench --bench peers -- A C       # only some workloads
//! ```
//!
//! Workloads (see BENCHMARKS.md for what each one means):
//! A submit 1,000,000 empty tasks, then collect every result (tasks/s)
//! B 100,000 tasks of about 1 µs of calibrated spinning: efficiency against all cores busy
//! C one task's round trip, submit then wait, 100,000 times: p50 and p99
//! D 100,000 tasks of 0-50 µs consumed in completion order: efficiency against the ideal
//! E bytes per pending task with 1,000,000 queued behind blocked workers (counting allocator)
//! F map over 1,000,000 items (ours bounded and lazy; rayon's par_iter; Python's map)
//! P the process pool against procspawn's and Python's: round trip, queued and windowed
//!   throughput, chunked map, and what a panic, an abort and a hang do
//!
//! Every pool gets as many threads as the machine has cores. Each figure is the median of
//! several runs with its spread (min..max); the last column is the ratio to the best peer
//! (above 1 means ahead of it). A-D run in rounds (every peer once, then again), and their
//! ratio is the median of the ratios within each round, so that the host's slow and fast
//! phases hit both sides of a ratio alike.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use concurrent_futures::lock::Event;
use concurrent_futures::{ThreadPoolExecutor, as_completed};
use futures::task::SpawnExt;

// ---------------------------------------------------------------------------------------
// Counting allocator for workload E; off (one relaxed load) everywhere else.

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's own arguments, so the
// `GlobalAlloc` contract holds as it does for `System`; the counter is bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: same layout the caller gave us (the caller upholds `alloc`'s contract).
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from `System.alloc` with this layout, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        // SAFETY: as for `dealloc` and `alloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

// ---------------------------------------------------------------------------------------
// The peers, behind one interface: spawn a closure returning u64, get a handle, join it.

trait Exec: Sync {
    type Handle: Send;
    fn spawn(&self, f: impl FnOnce() -> u64 + Send + 'static) -> Self::Handle;
    fn join(&self, h: Self::Handle) -> u64;
    fn join_all(&self, hs: Vec<Self::Handle>) -> u64 {
        hs.into_iter().map(|h| self.join(h)).sum()
    }
    /// Runs every closure and consumes the results in completion order.
    fn unordered(&self, fs: Vec<Box<dyn FnOnce() -> u64 + Send>>) -> u64;
}

fn channel_unordered<E: Exec>(e: &E, fs: Vec<Box<dyn FnOnce() -> u64 + Send>>) -> u64 {
    let n = fs.len();
    let (tx, rx) = crossbeam_channel::unbounded();
    for f in fs {
        let tx = tx.clone();
        drop(e.spawn(move || {
            let _ = tx.send(f());
            0
        }));
    }
    rx.iter().take(n).sum()
}

struct Ours(ThreadPoolExecutor);
impl Exec for Ours {
    type Handle = concurrent_futures::Future<u64>;
    fn spawn(&self, f: impl FnOnce() -> u64 + Send + 'static) -> Self::Handle {
        self.0.submit(f).unwrap()
    }
    fn join(&self, h: Self::Handle) -> u64 {
        h.result().unwrap()
    }
    fn unordered(&self, fs: Vec<Box<dyn FnOnce() -> u64 + Send>>) -> u64 {
        let futs: Vec<_> = fs.into_iter().map(|f| self.0.submit(f).unwrap()).collect();
        as_completed(futs).map(|f| f.result().unwrap()).sum()
    }
}

struct Rayon(rayon::ThreadPool);
impl Exec for Rayon {
    type Handle = oneshot::Receiver<u64>;
    fn spawn(&self, f: impl FnOnce() -> u64 + Send + 'static) -> Self::Handle {
        let (tx, rx) = oneshot::channel();
        self.0.spawn(move || {
            let _ = tx.send(f());
        });
        rx
    }
    fn join(&self, h: Self::Handle) -> u64 {
        h.recv().unwrap()
    }
    fn unordered(&self, fs: Vec<Box<dyn FnOnce() -> u64 + Send>>) -> u64 {
        channel_unordered(self, fs)
    }
}

/// Awaits every handle inside the runtime, as tokio code would (one `block_on`, not one each).
fn tokio_join_all(rt: &tokio::runtime::Runtime, hs: Vec<tokio::task::JoinHandle<u64>>) -> u64 {
    rt.block_on(async {
        let mut sum = 0;
        for h in hs {
            sum += h.await.unwrap();
        }
        sum
    })
}

struct TokioSpawn(tokio::runtime::Runtime);
impl Exec for TokioSpawn {
    type Handle = tokio::task::JoinHandle<u64>;
    fn spawn(&self, f: impl FnOnce() -> u64 + Send + 'static) -> Self::Handle {
        self.0.spawn(async move { f() })
    }
    fn join(&self, h: Self::Handle) -> u64 {
        self.0.block_on(h).unwrap()
    }
    fn join_all(&self, hs: Vec<Self::Handle>) -> u64 {
        tokio_join_all(&self.0, hs)
    }
    fn unordered(&self, fs: Vec<Box<dyn FnOnce() -> u64 + Send>>) -> u64 {
        self.0.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for f in fs {
                set.spawn(async move { f() });
            }
            let mut sum = 0;
            while let Some(r) = set.join_next().await {
                sum += r.unwrap();
            }
            sum
        })
    }
}

struct TokioBlocking(tokio::runtime::Runtime);
impl Exec for TokioBlocking {
    type Handle = tokio::task::JoinHandle<u64>;
    fn spawn(&self, f: impl FnOnce() -> u64 + Send + 'static) -> Self::Handle {
        self.0.spawn_blocking(f)
    }
    fn join(&self, h: Self::Handle) -> u64 {
        self.0.block_on(h).unwrap()
    }
    fn join_all(&self, hs: Vec<Self::Handle>) -> u64 {
        tokio_join_all(&self.0, hs)
    }
    fn unordered(&self, fs: Vec<Box<dyn FnOnce() -> u64 + Send>>) -> u64 {
        self.0.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for f in fs {
                set.spawn_blocking(f);
            }
            let mut sum = 0;
            while let Some(r) = set.join_next().await {
                sum += r.unwrap();
            }
            sum
        })
    }
}

struct ThreadPoolCrate(threadpool::ThreadPool);
impl Exec for ThreadPoolCrate {
    type Handle = oneshot::Receiver<u64>;
    fn spawn(&self, f: impl FnOnce() -> u64 + Send + 'static) -> Self::Handle {
        let (tx, rx) = oneshot::channel();
        self.0.execute(move || {
            let _ = tx.send(f());
        });
        rx
    }
    fn join(&self, h: Self::Handle) -> u64 {
        h.recv().unwrap()
    }
    fn unordered(&self, fs: Vec<Box<dyn FnOnce() -> u64 + Send>>) -> u64 {
        channel_unordered(self, fs)
    }
}

struct FuturesPool(futures::executor::ThreadPool);
impl Exec for FuturesPool {
    type Handle = futures::future::RemoteHandle<u64>;
    fn spawn(&self, f: impl FnOnce() -> u64 + Send + 'static) -> Self::Handle {
        self.0.spawn_with_handle(async move { f() }).unwrap()
    }
    fn join(&self, h: Self::Handle) -> u64 {
        futures::executor::block_on(h)
    }
    fn join_all(&self, hs: Vec<Self::Handle>) -> u64 {
        futures::executor::block_on(async {
            let mut sum = 0;
            for h in hs {
                sum += h.await;
            }
            sum
        })
    }
    fn unordered(&self, fs: Vec<Box<dyn FnOnce() -> u64 + Send>>) -> u64 {
        use futures::stream::{FuturesUnordered, StreamExt};
        let set: FuturesUnordered<_> = fs.into_iter().map(|f| self.spawn(f)).collect();
        futures::executor::block_on(set.fold(0, |a, b| async move { a + b }))
    }
}

/// The pool a user writes by hand: crossbeam-channel workers and a oneshot per task.
struct CrossbeamPool {
    tx: Option<crossbeam_channel::Sender<Box<dyn FnOnce() + Send>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}
impl CrossbeamPool {
    fn new(n: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<Box<dyn FnOnce() + Send>>();
        let threads = (0..n)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || rx.iter().for_each(|job| job()))
            })
            .collect();
        CrossbeamPool {
            tx: Some(tx),
            threads,
        }
    }
}
impl Drop for CrossbeamPool {
    fn drop(&mut self) {
        self.tx.take();
        self.threads.drain(..).for_each(|t| t.join().unwrap());
    }
}
impl Exec for CrossbeamPool {
    type Handle = oneshot::Receiver<u64>;
    fn spawn(&self, f: impl FnOnce() -> u64 + Send + 'static) -> Self::Handle {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.as_ref().unwrap().send(Box::new(move || {
            let _ = tx.send(f());
        }));
        rx
    }
    fn join(&self, h: Self::Handle) -> u64 {
        h.recv().unwrap()
    }
    fn unordered(&self, fs: Vec<Box<dyn FnOnce() -> u64 + Send>>) -> u64 {
        channel_unordered(self, fs)
    }
}

const PEERS: [&str; 7] = [
    "concurrent-futures",
    "rayon + oneshot",
    "tokio spawn",
    "tokio spawn_blocking",
    "threadpool + oneshot",
    "futures ThreadPool",
    "crossbeam pool + oneshot",
];

// The workloads are generic over `Exec`; this macro instantiates one for peer `i`.
macro_rules! on_peer {
    ($i:expr, $cores:expr, |$e:ident| $body:expr) => {{
        let cores = $cores;
        match $i {
            0 => {
                let $e = &Ours(ThreadPoolExecutor::builder().max_workers(cores).build().unwrap());
                $body
            }
            1 => {
                let $e = &Rayon(rayon::ThreadPoolBuilder::new().num_threads(cores).build().unwrap());
                $body
            }
            2 => {
                let $e = &TokioSpawn(
                    tokio::runtime::Builder::new_multi_thread().worker_threads(cores).build().unwrap(),
                );
                $body
            }
            3 => {
                let $e = &TokioBlocking(
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .max_blocking_threads(cores)
                        .build()
                        .unwrap(),
                );
                $body
            }
            4 => {
                let $e = &ThreadPoolCrate(threadpool::ThreadPool::new(cores));
                $body
            }
            5 => {
                let $e = &FuturesPool(futures::executor::ThreadPool::builder().pool_size(cores).create().unwrap());
                $body
            }
            _ => {
                let $e = &CrossbeamPool::new(cores);
                $body
            }
        }
    }};
}

// ---------------------------------------------------------------------------------------
// Workloads, written once against `Exec`.

/// A: submit `n` empty tasks, then collect every result. Returns tasks per second.
fn submit_collect<E: Exec>(e: &E, n: u64) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..n).map(|i| e.spawn(move || i)).collect();
    let sum = e.join_all(handles);
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(sum, n * (n - 1) / 2);
    n as f64 / secs
}

/// Spins for about `iters` loop iterations (calibrated to microseconds by `calibrate`).
fn spin(iters: u64) -> u64 {
    let mut x = 0u64;
    for i in 0..iters {
        x = black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    x
}

/// Loop iterations per microsecond on this machine.
fn calibrate() -> f64 {
    let iters = 20_000_000;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        black_box(spin(iters));
        best = best.min(start.elapsed().as_secs_f64());
    }
    iters as f64 / (best * 1e6)
}

/// B: `n` tasks of about 1 µs each. Returns efficiency: ideal all-cores time / actual.
fn tiny_tasks<E: Exec>(e: &E, n: u64, per_us: f64, cores: usize) -> f64 {
    let iters = per_us.round() as u64;
    let start = Instant::now();
    let handles: Vec<_> = (0..n).map(|_| e.spawn(move || spin(iters))).collect();
    black_box(e.join_all(handles));
    let actual = start.elapsed().as_secs_f64();
    let ideal = n as f64 * iters as f64 / per_us / 1e6 / cores as f64;
    100.0 * ideal / actual
}

/// C: one task's round trip, `n` times in sequence. Returns (p50, p99) in microseconds.
fn round_trip<E: Exec>(e: &E, n: usize) -> (f64, f64) {
    for i in 0..1000 {
        black_box(e.join(e.spawn(move || i))); // warm up threads and caches
    }
    let mut samples: Vec<f64> = (0..n as u64)
        .map(|i| {
            let start = Instant::now();
            black_box(e.join(e.spawn(move || i)));
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[n / 2], samples[n * 99 / 100])
}

/// D: `n` tasks of 0-50 µs (fixed pseudo-random), consumed in completion order. Returns
/// efficiency: ideal all-cores time / actual.
fn completion_order<E: Exec>(e: &E, n: usize, per_us: f64, cores: usize) -> f64 {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let work: Vec<u64> = (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed % 51) as f64 * per_us) as u64
        })
        .collect();
    let total_us: f64 = work.iter().map(|&w| w as f64 / per_us).sum();
    let tasks: Vec<Box<dyn FnOnce() -> u64 + Send>> = work
        .into_iter()
        .map(|w| Box::new(move || spin(w)) as Box<_>)
        .collect();
    let start = Instant::now();
    black_box(e.unordered(tasks));
    let actual = start.elapsed().as_secs_f64();
    100.0 * total_us / 1e6 / cores as f64 / actual
}

/// E: live heap bytes and resident memory per pending task, with `n` tasks queued behind
/// workers that are all blocked. Runs in a child process (see `main`).
fn pending_memory<E: Exec>(e: &E, n: u64, cores: usize) -> (f64, f64) {
    let gate = Arc::new(Event::new());
    let blockers: Vec<_> = (0..cores * 2)
        .map(|_| {
            let g = gate.clone();
            e.spawn(move || {
                g.wait();
                0
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100)); // let the blockers take every worker
    let rss_before = rss_bytes();
    LIVE.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let handles: Vec<_> = (0..n).map(|i| e.spawn(move || i)).collect();
    let live = LIVE.load(Ordering::SeqCst);
    COUNTING.store(false, Ordering::SeqCst);
    let rss = rss_bytes() - rss_before;
    gate.set();
    e.join_all(blockers);
    e.join_all(handles);
    (live as f64 / n as f64, rss as f64 / n as f64)
}

fn rss_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// F: map `n` items through `x * 2 + 1`. Returns items per second.
fn map_ours(pool: &ThreadPoolExecutor, n: u64, buffer: usize, chunk: usize) -> f64 {
    let start = Instant::now();
    let sum: u64 = pool
        .map(|x: u64| x * 2 + 1, 0..n)
        .buffer_size(buffer)
        .chunk_size(chunk)
        .map(Result::unwrap)
        .sum();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(sum, n * n);
    n as f64 / secs
}

fn map_rayon(pool: &rayon::ThreadPool, n: u64) -> f64 {
    use rayon::prelude::*;
    let start = Instant::now();
    let out: Vec<u64> = pool.install(|| (0..n).into_par_iter().map(|x| x * 2 + 1).collect());
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(out.iter().sum::<u64>(), n * n);
    n as f64 / secs
}

// ---------------------------------------------------------------------------------------
// Reporting.

#[derive(Clone)]
struct Figure {
    peer: String,
    /// One sample per round. When `interleaved`, sample `r` of every interleaved figure was
    /// taken in the same round, one peer after the other (see `measure`).
    samples: Vec<f64>,
    interleaved: bool,
}

impl Figure {
    /// A figure whose samples were taken on their own, not in rounds with the others.
    fn alone(peer: impl Into<String>, samples: Vec<f64>) -> Figure {
        Figure {
            peer: peer.into(),
            samples,
            interleaved: false,
        }
    }

    fn median(&self) -> f64 {
        median(self.samples.clone())
    }

    /// How far ahead of `best` this figure is (above 1: ahead). For two interleaved figures,
    /// the median of the ratios round by round: the host's slow and fast phases (minutes
    /// long on a shared VM) then hit both sides of each ratio alike. Otherwise the ratio of
    /// the medians.
    fn ratio_to(&self, best: &Figure, higher: bool) -> f64 {
        let ratio = |a: f64, b: f64| if higher { a / b } else { b / a };
        if self.interleaved && best.interleaved && self.samples.len() == best.samples.len() {
            median(
                self.samples
                    .iter()
                    .zip(&best.samples)
                    .map(|(&a, &b)| ratio(a, b))
                    .collect(),
            )
        } else {
            ratio(self.median(), best.median())
        }
    }
}

fn median(mut s: Vec<f64>) -> f64 {
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// Prints one workload's table. `higher` says whether a larger figure is better.
fn report(title: &str, unit: &str, higher: bool, figures: &[Figure]) {
    println!("\n{title}");
    println!("| peer | {unit} (median) | spread (min..max) | vs best peer |");
    println!("| --- | ---: | ---: | ---: |");
    let best_peer = figures
        .iter()
        .filter(|f| !f.peer.starts_with(PEERS[0]))
        .reduce(|a, b| {
            if (a.median() > b.median()) == higher {
                a
            } else {
                b
            }
        });
    for f in figures {
        let m = f.median();
        let (lo, hi) = f
            .samples
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let ratio = best_peer.map_or(String::from("-"), |b| {
            format!("{:.2}x", f.ratio_to(b, higher))
        });
        println!(
            "| {} | {} | {}..{} | {ratio} |",
            f.peer,
            fmt(m),
            fmt(lo),
            fmt(hi)
        );
    }
}

fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Runs `f` `runs` times on each peer in `peers`, collecting one figure per peer. The runs
/// go in rounds (every peer once, then again), not one peer's runs back to back, so that a
/// slow phase of the host falls on all peers of a round rather than on one peer's figure.
fn measure(peers: &[usize], runs: usize, mut f: impl FnMut(usize) -> f64) -> Vec<Figure> {
    let [figs] = measure_each(peers, runs, |i| [f(i)]);
    figs
}

/// [`measure`] for a run that gives `K` figures at once (a p50 and a p99).
fn measure_each<const K: usize>(
    peers: &[usize],
    runs: usize,
    mut f: impl FnMut(usize) -> [f64; K],
) -> [Vec<Figure>; K] {
    let mut figs: [Vec<Figure>; K] = std::array::from_fn(|_| {
        peers
            .iter()
            .map(|&i| Figure {
                peer: PEERS[i].to_string(),
                samples: Vec::with_capacity(runs),
                interleaved: true,
            })
            .collect()
    });
    for _ in 0..runs {
        for (n, &i) in peers.iter().enumerate() {
            for (k, value) in f(i).into_iter().enumerate() {
                figs[k][n].samples.push(value);
            }
        }
    }
    figs
}

/// Python's own executors, measured by benches/peers.py when python3 is on the PATH.
/// Lines look like `A<TAB>python ThreadPoolExecutor<TAB>v1,v2,v3`.
fn python_figures(workloads: &[String]) -> Vec<(String, Figure)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers.py");
    let Ok(out) = Command::new("python3").arg(script).args(workloads).output() else {
        println!("(python3 not found: no Python rows)");
        return Vec::new();
    };
    if !out.status.success() {
        println!(
            "(benches/peers.py failed: {})",
            String::from_utf8_lossy(&out.stderr)
        );
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.split('\t');
            let (w, peer, vals) = (parts.next()?, parts.next()?, parts.next()?);
            let samples = vals.split(',').filter_map(|v| v.parse().ok()).collect();
            Some((w.to_string(), Figure::alone(peer, samples)))
        })
        .collect()
}

fn double_plus_one(x: u64) -> u64 {
    x * 2 + 1
}

/// What one round of workload P measures on one process pool.
#[derive(Clone, Copy)]
struct ProcessFigures {
    /// Round trip of one task, submit then wait: p50 and p99, µs.
    p50: f64,
    p99: f64,
    /// 100,000 tasks submitted at once, then collected (tasks/s); `None` where the pool
    /// cannot hold that many (procspawn keeps two IPC channels per pending call).
    queued: Option<f64>,
    /// 100,000 tasks with at most 1,000 in flight (tasks/s).
    windowed: f64,
    /// map over 1,000,000 items in chunks of 1,000 (items/s).
    map: f64,
}

/// How many round trips each process pool makes per round: the same for every peer.
const ROUND_TRIPS: usize = 20_000;

/// Sorted round-trip samples in µs, `n` of them, of `call(i)`.
fn round_trips(n: usize, mut call: impl FnMut(u64) -> u64) -> Vec<f64> {
    let mut rt: Vec<f64> = (0..n as u64)
        .map(|i| {
            let start = Instant::now();
            black_box(call(i));
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    rt.sort_by(f64::total_cmp);
    rt
}

/// `tasks` calls with at most `window` in flight, through `submit` and `wait`; tasks/s.
fn windowed<H>(
    tasks: u64,
    window: usize,
    mut submit: impl FnMut(u64) -> H,
    mut wait: impl FnMut(H) -> u64,
) -> f64 {
    let start = Instant::now();
    let mut flight = std::collections::VecDeque::with_capacity(window);
    let mut sum = 0;
    for i in 0..tasks {
        if flight.len() == window {
            sum += wait(flight.pop_front().expect("a task in flight"));
        }
        flight.push_back(submit(i));
    }
    sum += flight.into_iter().map(wait).sum::<u64>();
    assert_eq!(sum, tasks * tasks);
    tasks as f64 / start.elapsed().as_secs_f64()
}

/// P, procspawn's `Pool` with as many processes as ours has workers.
fn procspawn_pool(cores: usize) -> ProcessFigures {
    let pool = procspawn::Pool::new(cores).unwrap();
    let call = |i: u64| pool.spawn(i, double_plus_one).join().unwrap();
    for i in 0..200 {
        black_box(call(i));
    }
    let rt = round_trips(ROUND_TRIPS, call);
    let windowed = windowed(
        100_000,
        1_000,
        |i| pool.spawn(i, double_plus_one),
        |h| h.join().unwrap(),
    );
    let items = 1_000_000u64;
    let start = Instant::now();
    let chunks: Vec<_> = (0..items)
        .step_by(1000)
        .map(|lo| pool.spawn((lo..lo + 1000).collect::<Vec<u64>>(), map_chunk))
        .collect();
    let sum: u64 = chunks
        .into_iter()
        .map(|h| h.join().unwrap().into_iter().sum::<u64>())
        .sum();
    assert_eq!(sum, items * items);
    let map = items as f64 / start.elapsed().as_secs_f64();
    pool.shutdown();
    ProcessFigures {
        p50: rt[ROUND_TRIPS / 2],
        p99: rt[ROUND_TRIPS * 99 / 100],
        queued: None,
        windowed,
        map,
    }
}

fn map_chunk(xs: Vec<u64>) -> Vec<u64> {
    xs.into_iter().map(double_plus_one).collect()
}

fn hang(_: ()) -> u64 {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn panics(_: ()) -> u64 {
    panic!("bad input")
}

fn aborts(_: ()) -> u64 {
    std::process::abort()
}

/// P, how each pool takes a task that panics, one that aborts its process and one that
/// hangs past a 500 ms limit: what the caller gets, and whether the next task is served.
fn process_failures(cores: usize) {
    println!("\n## P: a task that panics, aborts, or hangs past a 500 ms limit");
    println!("| peer | panic | abort | hang (reported after) | next task |");
    println!("| --- | --- | --- | --- | --- |");
    let ours = concurrent_futures::ProcessPoolExecutor::builder()
        .max_workers(cores)
        .time_limit(Duration::from_millis(500))
        .build()
        .unwrap();
    let text = |r: Result<u64, concurrent_futures::TaskError>| match r {
        Ok(v) => format!("Ok({v})"),
        Err(e) => format!("Err: {e}"),
    };
    let panic = text(ours.submit(panics, ()).unwrap().result());
    let abort = text(ours.submit(aborts, ()).unwrap().result());
    let fut = ours.submit(hang, ()).unwrap();
    // Both clocks start once a worker holds the task: the limit is on the task's run.
    while !fut.running() {
        std::thread::yield_now();
    }
    let start = Instant::now();
    let hung = text(fut.result());
    let after = start.elapsed();
    let next = text(ours.submit(double_plus_one, 20).unwrap().result());
    println!(
        "| concurrent-futures ProcessPoolExecutor (`time_limit`) | {} | {} | {} ({:.1} ms) | {next} |",
        short(&panic),
        short(&abort),
        short(&hung),
        after.as_secs_f64() * 1e3,
    );
    let text = |r: Result<u64, procspawn::SpawnError>| match r {
        Ok(v) => format!("Ok({v})"),
        Err(e) => format!("Err: {e}"),
    };
    let pool = procspawn::Pool::new(cores).unwrap();
    let panic = text(pool.spawn((), panics).join());
    let abort = text(pool.spawn((), aborts).join());
    let mut handle = pool.spawn((), hang);
    while handle.pid().is_none() {
        std::thread::yield_now();
    }
    let start = Instant::now();
    let hung = text(handle.join_timeout(Duration::from_millis(500)));
    let after = start.elapsed();
    let next = text(
        pool.spawn(20, double_plus_one)
            .join_timeout(Duration::from_secs(10)),
    );
    println!(
        "| procspawn Pool (`join_timeout`) | {} | {} | {} ({:.1} ms) | {next} |",
        short(&panic),
        short(&abort),
        short(&hung),
        after.as_secs_f64() * 1e3,
    );
    pool.kill();
}

/// The first 80 characters of a result, on one table line.
fn short(s: &str) -> String {
    s.replace('|', "/").chars().take(80).collect()
}

/// P: the process pool. Returns (round trip p50 µs, p99 µs, tasks/s, chunked map items/s).
fn process_pool(cores: usize) -> ProcessFigures {
    let pool = concurrent_futures::ProcessPoolExecutor::builder()
        .max_workers(cores)
        .build()
        .unwrap();
    for i in 0..200 {
        black_box(pool.submit(double_plus_one, i).unwrap().result().unwrap());
    }
    let rt = round_trips(ROUND_TRIPS, |i| {
        pool.submit(double_plus_one, i).unwrap().result().unwrap()
    });
    let windowed = windowed(
        100_000,
        1_000,
        |i| pool.submit(double_plus_one, i).unwrap(),
        |f| f.result().unwrap(),
    );
    let tasks = 100_000u64;
    let start = Instant::now();
    let futs: Vec<_> = (0..tasks)
        .map(|i| pool.submit(double_plus_one, i).unwrap())
        .collect();
    let sum: u64 = futs.into_iter().map(|f| f.result().unwrap()).sum();
    assert_eq!(sum, tasks * tasks);
    let rate = tasks as f64 / start.elapsed().as_secs_f64();
    let items = 1_000_000u64;
    let start = Instant::now();
    let sum: u64 = pool
        .map(double_plus_one, 0..items)
        .chunk_size(1000)
        .map(Result::unwrap)
        .sum();
    assert_eq!(sum, items * items);
    let map = items as f64 / start.elapsed().as_secs_f64();
    ProcessFigures {
        p50: rt[ROUND_TRIPS / 2],
        p99: rt[ROUND_TRIPS * 99 / 100],
        queued: Some(rate),
        windowed,
        map,
    }
}

fn main() {
    // Workers of the process pools (workload P) re-run this binary and start here: ours,
    // then procspawn's.
    concurrent_futures::init();
    procspawn::init();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--bench"))
        .collect();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());

    // Child mode for workload E: one peer per process, so allocations and RSS are its own.
    if args.first().map(String::as_str) == Some("--memory") {
        let i: usize = args[1].parse().unwrap();
        let (heap, rss) = on_peer!(i, cores, |e| pending_memory(e, 1_000_000, cores));
        println!("{heap} {rss}");
        return;
    }

    let all = ["A", "B", "C", "D", "E", "F", "P"];
    let wanted: Vec<String> = if args.is_empty() {
        all.iter().map(|s| s.to_string()).collect()
    } else {
        args.iter().map(|a| a.to_uppercase()).collect()
    };
    let want = |w: &str| wanted.iter().any(|a| a == w);
    let python = if std::env::var_os("PEERS_ONLY").is_some() {
        Vec::new()
    } else {
        python_figures(&wanted)
    };
    let py = |w: &'static str| {
        python
            .iter()
            .filter(move |(k, _)| k == w)
            .map(|(_, f)| f.clone())
    };
    // `PEERS_ONLY=0,6` runs just those peers (by their index in `PEERS`), e.g. to profile one.
    let everyone: Vec<usize> = match std::env::var("PEERS_ONLY") {
        Ok(list) => list
            .split(',')
            .map(|i| i.trim().parse().expect("PEERS_ONLY: indexes into PEERS"))
            .collect(),
        Err(_) => (0..PEERS.len()).collect(),
    };
    let per_us = calibrate();
    println!(
        "# concurrent-futures vs peers: {cores} cores, {per_us:.0} spin iterations per microsecond"
    );

    if want("A") {
        let mut figs = measure(&everyone, 5, |i| {
            on_peer!(i, cores, |e| submit_collect(e, 1_000_000)) / 1e6
        });
        figs.extend(py("A"));
        report(
            "## A: submit 1,000,000 empty tasks, then collect every result",
            "M tasks/s",
            true,
            &figs,
        );
    }
    if want("B") {
        let figs = measure(&everyone, 5, |i| {
            on_peer!(i, cores, |e| tiny_tasks(e, 100_000, per_us, cores))
        });
        report(
            "## B: 100,000 tasks of ~1 µs: efficiency against all cores busy",
            "% of ideal",
            true,
            &figs,
        );
    }
    if want("C") {
        let [mut p50s, mut p99s] = measure_each(&everyone, 5, |i| {
            let (p50, p99) = on_peer!(i, cores, |e| round_trip(e, 100_000));
            [p50, p99]
        });
        for (w, f) in python.iter().filter(|(k, _)| k == "C50" || k == "C99") {
            let target = if w == "C50" { &mut p50s } else { &mut p99s };
            target.push(f.clone());
        }
        report(
            "## C: round trip of one task, submit then wait (p50)",
            "µs",
            false,
            &p50s,
        );
        report(
            "## C: round trip of one task, submit then wait (p99)",
            "µs",
            false,
            &p99s,
        );
    }
    if want("D") {
        let figs = measure(&everyone, 5, |i| {
            on_peer!(i, cores, |e| completion_order(e, 100_000, per_us, cores))
        });
        report(
            "## D: 100,000 tasks of 0-50 µs, consumed in completion order",
            "% of ideal",
            true,
            &figs,
        );
    }
    if want("E") {
        let exe = std::env::current_exe().unwrap();
        let mut heap = Vec::new();
        let mut rss = Vec::new();
        for &i in &everyone {
            let (mut h, mut r) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                let out = Command::new(&exe)
                    .args(["--memory", &i.to_string()])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                let mut it = text.split_whitespace().map(|v| v.parse::<f64>().unwrap());
                h.push(it.next().unwrap());
                r.push(it.next().unwrap());
            }
            heap.push(Figure::alone(PEERS[i], h));
            rss.push(Figure::alone(PEERS[i], r));
        }
        report(
            "## E: heap bytes per pending task (1,000,000 queued, counting allocator)",
            "bytes",
            false,
            &heap,
        );
        report(
            "## E: resident memory per pending task (same run, RSS growth)",
            "bytes",
            false,
            &rss,
        );
    }
    if want("F") {
        let pool = ThreadPoolExecutor::builder()
            .max_workers(cores)
            .build()
            .unwrap();
        let rayon = rayon::ThreadPoolBuilder::new()
            .num_threads(cores)
            .build()
            .unwrap();
        let ours = |buffer: usize, chunk: usize| {
            Figure::alone(
                format!("{} map, buffer {buffer}, chunk {chunk}", PEERS[0]),
                (0..5)
                    .map(|_| map_ours(&pool, 1_000_000, buffer, chunk) / 1e6)
                    .collect(),
            )
        };
        let mut figs = vec![
            ours(2 * cores, 1),
            ours(1024, 1),
            ours(2 * cores, 1000),
            ours(2 * cores, 10_000),
            Figure::alone(
                "rayon par_iter",
                (0..5).map(|_| map_rayon(&rayon, 1_000_000) / 1e6).collect(),
            ),
        ];
        figs.extend(py("F"));
        report("## F: map over 1,000,000 items", "M items/s", true, &figs);
    }
    if want("P") {
        // Ours and procspawn's in rounds, one after the other, the same samples each.
        let mut ours_runs = Vec::new();
        let mut procspawn_runs = Vec::new();
        // `NO_PROCSPAWN=1` measures ours alone (before/after comparisons of our own code).
        let with_procspawn = std::env::var_os("NO_PROCSPAWN").is_none();
        for _ in 0..5 {
            ours_runs.push(process_pool(cores));
            if with_procspawn {
                procspawn_runs.push(procspawn_pool(cores));
            }
        }
        let row = |label: &str, runs: &[ProcessFigures], pick: fn(&ProcessFigures) -> f64| Figure {
            peer: label.into(),
            samples: runs.iter().map(pick).collect(),
            interleaved: true,
        };
        let ours = "concurrent-futures ProcessPoolExecutor";
        let theirs = "procspawn Pool";
        let peer_rows = |w: &str| {
            python
                .iter()
                .filter(|(k, _)| k == w)
                .map(|(_, f)| f.clone())
                .collect::<Vec<_>>()
        };
        let mut rt50 = vec![
            row(ours, &ours_runs, |r| r.p50),
            row(theirs, &procspawn_runs, |r| r.p50),
        ];
        rt50.extend(peer_rows("P50"));
        let mut rt99 = vec![
            row(ours, &ours_runs, |r| r.p99),
            row(theirs, &procspawn_runs, |r| r.p99),
        ];
        rt99.extend(peer_rows("P99"));
        let mut rate = vec![row(ours, &ours_runs, |r| {
            r.queued.unwrap_or_default() / 1e3
        })];
        rate.extend(peer_rows("PT"));
        let mut window = vec![
            row(ours, &ours_runs, |r| r.windowed / 1e3),
            row(theirs, &procspawn_runs, |r| r.windowed / 1e3),
        ];
        let mut map = vec![
            row("concurrent-futures map, chunk 1000", &ours_runs, |r| {
                r.map / 1e6
            }),
            row(
                "procspawn Pool, a call per chunk of 1000",
                &procspawn_runs,
                |r| r.map / 1e6,
            ),
        ];
        map.extend(peer_rows("PM"));
        for figures in [&mut rt50, &mut rt99, &mut window, &mut map] {
            figures.retain(|f| !f.samples.is_empty()); // procspawn, when left out
        }
        report(
            "## P: process pool, round trip of one task (p50)",
            "µs",
            false,
            &rt50,
        );
        report(
            "## P: process pool, round trip of one task (p99)",
            "µs",
            false,
            &rt99,
        );
        report(
            "## P: process pool, submit 100,000 tasks then collect",
            "K tasks/s",
            true,
            &rate,
        );
        report(
            "## P: process pool, 100,000 tasks with at most 1,000 in flight",
            "K tasks/s",
            true,
            &window,
        );
        report(
            "## P: process pool, map over 1,000,000 items, chunks of 1000",
            "M items/s",
            true,
            &map,
        );
        if with_procspawn {
            // Round by round, so that a round in which procspawn led is seen.
            let ratios: Vec<String> = ours_runs
                .iter()
                .zip(&procspawn_runs)
                .map(|(o, p)| format!("{:.2}", p.p50 / o.p50))
                .collect();
            println!(
                "\nround trip p50, procspawn / ours, round by round: {}",
                ratios.join(" ")
            );
            process_failures(cores);
        }
    }
}
