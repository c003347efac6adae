//! The Redis executor against one local `redis-server`, and against RQ and Celery in the
//! same run (BENCHMARKS.md, "Redis").
//!
//! ```text
//! cargo bench -p concurrent-futures-benches --bench redis            # ours, then the peers
//! cargo bench -p concurrent-futures-benches --bench redis -- --ours  # ours only
//! ```
//!
//! Like for like: every contestant runs 2 worker processes of one task slot each (ours at
//! `concurrency(1)`, RQ's `SimpleWorker`, Celery's `solo` and `prefork -c 1`), started for
//! its turn and stopped after it; each turn is 50 warm-up round trips, 300 timed ones
//! (submit one no-op task, wait for its result) and 10,000 no-op tasks end to end (submit
//! all, then wait for all). The contestants take turns in rounds (`CF_BENCH_ROUNDS`,
//! default 3), in an order that rotates each round; the tables give medians over the rounds
//! and the median of the per-round ratios. Each row states the delivery its peer is
//! configured with. Also: the raw Streams round trip (XADD → XREADGROUP BLOCK in another
//! process → XADD → XREAD BLOCK) in each round, and, once, Redis memory per queued task and
//! after `result_ttl`, `map`, and recovery: how long after a worker's SIGKILL its task
//! starts again, and how often a healthy task three leases long runs. The peers run from
//! `redis_peers.py` in a virtualenv that this bench creates under `target/` (pip installs
//! RQ and Celery there).

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use concurrent_futures::redis::{RedisExecutor, RedisWorker, Tasks};

fn noop(_: ()) {}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Appends `tag` to `path`, then sleeps: counts runs across processes.
fn mark(job: (String, String, u64)) -> String {
    let (path, tag, ms) = job;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    // One write per line: concurrent appends then never interleave.
    f.write_all(format!("{tag}\n").as_bytes()).unwrap();
    drop(f);
    std::thread::sleep(Duration::from_millis(ms));
    tag
}

fn tasks() -> Tasks {
    Tasks::new()
        .add("noop", noop)
        .add("sleep", sleep_ms)
        .add("mark", mark)
}

#[path = "../tests/redis_server/mod.rs"]
mod redis_server;

use redis_server::RedisServer as Server;

impl Server {
    fn flush(&self) {
        let _: () = redis::cmd("FLUSHALL").query(&mut self.con()).unwrap();
    }

    fn used_memory(&self) -> i64 {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query(&mut self.con())
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

struct Worker(Child);

impl Worker {
    fn start(url: &str, concurrency: usize, lease_ms: u64) -> Worker {
        Worker(
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--worker",
                    url,
                    &concurrency.to_string(),
                    &lease_ms.to_string(),
                ])
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The echo side of the raw round trip, in its own process.
fn raw_echo(url: &str) {
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: Result<(), _> = redis::cmd("XGROUP")
        .arg(&["CREATE", "raw:in", "g", "0", "MKSTREAM"])
        .query(&mut con);
    loop {
        let v: redis::Value = redis::cmd("XREADGROUP")
            .arg(&[
                "GROUP", "g", "echo", "COUNT", "1", "BLOCK", "0", "STREAMS", "raw:in", ">",
            ])
            .query(&mut con)
            .unwrap();
        if matches!(v, redis::Value::Nil) {
            continue;
        }
        let _: String = redis::cmd("XADD")
            .arg(&["raw:out", "*", "r", "1"])
            .query(&mut con)
            .unwrap();
    }
}

fn raw_round_trip(server: &Server, n: usize) -> Vec<Duration> {
    let mut echo = Command::new(std::env::current_exe().unwrap())
        .args(["--echo", &server.url])
        .spawn()
        .unwrap();
    let mut con = server.con();
    std::thread::sleep(Duration::from_millis(300));
    let mut last = "0-0".to_string();
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let t = Instant::now();
        let _: String = redis::cmd("XADD")
            .arg(&["raw:in", "*", "a", "1"])
            .query(&mut con)
            .unwrap();
        let v: redis::Value = redis::cmd("XREAD")
            .arg(&[
                "COUNT",
                "1",
                "BLOCK",
                "0",
                "STREAMS",
                "raw:out",
                last.as_str(),
            ])
            .query(&mut con)
            .unwrap();
        let id = first_id(&v);
        last = id;
        if i >= 100 {
            times.push(t.elapsed());
        }
    }
    let _ = echo.kill();
    let _ = echo.wait();
    times.sort();
    times
}

fn first_id(v: &redis::Value) -> String {
    // [[stream, [[id, fields]]]]
    let redis::Value::Array(streams) = v else {
        panic!("{v:?}")
    };
    let redis::Value::Array(s) = &streams[0] else {
        panic!()
    };
    let redis::Value::Array(entries) = &s[1] else {
        panic!()
    };
    let redis::Value::Array(e) = &entries[0] else {
        panic!()
    };
    let redis::Value::BulkString(id) = &e[0] else {
        panic!()
    };
    String::from_utf8(id.clone()).unwrap()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

/// How many alternating rounds the comparison runs (`CF_BENCH_ROUNDS`, default 3).
fn rounds() -> usize {
    std::env::var("CF_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Timed round trips and end-to-end tasks per round, the same for every peer.
const ROUND_TRIPS: usize = 300;
const END_TO_END: usize = 10_000;

/// One round's figures for one peer.
#[derive(Clone, Copy)]
struct Sample {
    p50_us: f64,
    p99_us: f64,
    /// End-to-end tasks per second (none for the raw round trips).
    rate: Option<f64>,
}

fn sample(mut rt: Vec<Duration>, rate: Option<f64>) -> Sample {
    rt.sort();
    Sample {
        p50_us: us(percentile(&rt, 0.5)),
        p99_us: us(percentile(&rt, 0.99)),
        rate,
    }
}

/// One round of ours: 2 worker processes of `slots` task slots each, started for the round,
/// 50 warm-up round trips, `ROUND_TRIPS` timed ones, then `END_TO_END` tasks submitted at
/// once and waited for.
fn ours_round(server: &Server, slots: usize) -> Sample {
    server.flush();
    let workers = [
        Worker::start(&server.url, slots, 30_000),
        Worker::start(&server.url, slots, 30_000),
    ];
    let ex = RedisExecutor::builder(&server.url, tasks())
        .build()
        .unwrap();
    // Both workers up: each has joined the consumer group.
    while ex.info().unwrap().workers.len() < 2 {
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..50 {
        ex.submit(noop, ()).unwrap().result().unwrap();
    }
    let rt: Vec<Duration> = (0..ROUND_TRIPS)
        .map(|_| {
            let t = Instant::now();
            ex.submit(noop, ()).unwrap().result().unwrap();
            t.elapsed()
        })
        .collect();
    let t = Instant::now();
    let futs: Vec<_> = (0..END_TO_END)
        .map(|_| ex.submit(noop, ()).unwrap())
        .collect();
    for f in futs {
        f.result().unwrap();
    }
    let rate = END_TO_END as f64 / t.elapsed().as_secs_f64();
    drop(ex);
    drop(workers);
    sample(rt, Some(rate))
}

fn raw_round(server: &Server) -> Sample {
    server.flush();
    sample(raw_round_trip(server, ROUND_TRIPS), None)
}

/// The peers' driver: `redis_peers.py` in the bench's virtualenv, one round per command.
struct Peers {
    child: Child,
    out: std::io::BufReader<std::process::ChildStdout>,
    versions: String,
}

impl Peers {
    fn start(server: &Server) -> Option<Peers> {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-venv");
        let python = venv.join("bin/python");
        if !python.exists() {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success())
                && Command::new(&python)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "-q",
                        "rq==2.*",
                        "celery[redis]==5.*",
                    ])
                    .status()
                    .is_ok_and(|s| s.success());
            if !ok {
                println!("(could not install RQ and Celery with pip: peers skipped)");
                return None;
            }
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("redis_peers.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(server.port.to_string())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut versions = String::new();
        std::io::BufRead::read_line(&mut out, &mut versions).ok()?;
        let versions = versions.trim().strip_prefix("VERSIONS ")?.to_owned();
        Some(Peers {
            child,
            out,
            versions,
        })
    }

    /// Sends `cmd` and returns the words of the first reply line that starts with `tag`.
    fn ask(&mut self, cmd: &str, tag: &str) -> Vec<String> {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
        loop {
            let mut line = String::new();
            let n = std::io::BufRead::read_line(&mut self.out, &mut line).unwrap();
            assert!(n > 0, "the peers' driver ended (after {cmd:?})");
            if let Some(rest) = line.trim().strip_prefix(tag) {
                return rest.split_whitespace().map(str::to_owned).collect();
            }
            print!("{line}");
        }
    }

    fn round(&mut self, cmd: &str) -> Sample {
        let w = self.ask(cmd, "RESULT ");
        assert_eq!(w[0], cmd, "{w:?}");
        Sample {
            p50_us: w[1].parse().unwrap(),
            p99_us: w[2].parse().unwrap(),
            rate: w[3].parse().ok(),
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = writeln!(stdin, "quit");
        }
        let _ = self.child.wait();
    }
}

/// A contestant of the comparison: its label, its task slots and delivery, how to run
/// one round of it.
struct Row {
    key: &'static str,
    label: String,
    delivery: &'static str,
}

fn rows(versions: &str) -> Vec<Row> {
    let v: Vec<&str> = versions.split_whitespace().collect();
    let (rq, celery) = (
        v.get(1).copied().unwrap_or("?"),
        v.get(3).copied().unwrap_or("?"),
    );
    vec![
        Row {
            key: "ours-1",
            label: "concurrent-futures, `concurrency(1)`".into(),
            delivery: "at least once: a dead worker's task runs again one lease later (30 s), the future completes once",
        },
        Row {
            key: "rq",
            label: format!("RQ {rq} `SimpleWorker`"),
            delivery: "at most once: a job whose worker dies is marked failed (abandoned), run again only with `Retry`",
        },
        Row {
            key: "celery",
            label: format!("Celery {celery} `solo`"),
            delivery: "at most once (default): acknowledged on receipt, so a dead worker loses its running and prefetched tasks",
        },
        Row {
            key: "celery-late",
            label: format!("Celery {celery} `solo`, `acks_late`"),
            delivery: "at least once: redelivered after the visibility timeout (1 h default)",
        },
        Row {
            key: "celery-prefork",
            label: format!("Celery {celery} `prefork -c 1`"),
            delivery: "at most once (default), as `solo`; the task runs in a child process",
        },
        Row {
            key: "ours-4",
            label: "concurrent-futures, `concurrency(4)`: 8 slots, not like for like".into(),
            delivery: "as `concurrency(1)`",
        },
    ]
}

/// The median and spread of `xs`.
fn median(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// The comparison: every contestant once per round, in an order that rotates from round to
/// round, the same samples for each.
fn compare(server: &Server, with_peers: bool) {
    let mut peers = if with_peers {
        Peers::start(server)
    } else {
        None
    };
    let versions = peers
        .as_ref()
        .map_or_else(String::new, |p| p.versions.clone());
    let all = rows(&versions);
    let run: Vec<&Row> = all
        .iter()
        .filter(|r| peers.is_some() || r.key.starts_with("ours"))
        .collect();
    let mut results: std::collections::HashMap<&str, Vec<Sample>> = Default::default();
    let mut raw_rust = Vec::new();
    let mut raw_python = Vec::new();
    let n = rounds();
    for round in 0..n {
        raw_rust.push(raw_round(server));
        if let Some(p) = &mut peers {
            server.flush();
            raw_python.push(p.round("raw-python"));
        }
        for i in 0..run.len() {
            let row = run[(i + round) % run.len()];
            let s = match row.key {
                "ours-1" => ours_round(server, 1),
                "ours-4" => ours_round(server, 4),
                key => {
                    server.flush();
                    peers.as_mut().unwrap().round(key)
                }
            };
            eprintln!(
                "round {}/{n}: {}: p50 {:.0} µs, {:.0} tasks/s",
                round + 1,
                row.key,
                s.p50_us,
                s.rate.unwrap_or(0.0)
            );
            results.entry(row.key).or_default().push(s);
        }
    }
    let ours = results["ours-1"].clone();
    println!(
        "\n{n} rounds; per round and contestant: 2 worker processes, {ROUND_TRIPS} timed round \
         trips (after 50 warm-up), {END_TO_END} no-op tasks end to end. Medians over the \
         rounds (min..max); *ours is* = the median of the per-round ratios of \
         concurrent-futures `concurrency(1)` to that row.\n"
    );
    println!(
        "| contestant (2 workers) | delivery | round trip p50 µs | p99 µs | end to end, tasks/s | ours is |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for row in &run {
        let r = &results[row.key];
        let (p50, p50a, p50b) = median(&r.iter().map(|s| s.p50_us).collect::<Vec<_>>());
        let (p99, ..) = median(&r.iter().map(|s| s.p99_us).collect::<Vec<_>>());
        let rates: Vec<f64> = r.iter().map(|s| s.rate.unwrap()).collect();
        let (rate, ra, rb) = median(&rates);
        let speed: Vec<f64> = ours
            .iter()
            .zip(r)
            .map(|(o, p)| o.rate.unwrap() / p.rate.unwrap())
            .collect();
        let latency: Vec<f64> = ours
            .iter()
            .zip(r)
            .map(|(o, p)| p.p50_us / o.p50_us)
            .collect();
        let versus = if row.key.starts_with("ours") {
            "-".to_owned()
        } else {
            format!(
                "{:.1}x the throughput, {:.1}x faster round trip",
                median(&speed).0,
                median(&latency).0
            )
        };
        println!(
            "| {} | {} | {p50:.0} ({p50a:.0}..{p50b:.0}) | {p99:.0} | {rate:.0} ({ra:.0}..{rb:.0}) | {versus} |",
            row.label, row.delivery,
        );
    }
    let ratio: Vec<f64> = ours
        .iter()
        .zip(&raw_rust)
        .map(|(o, r)| o.p50_us / r.p50_us)
        .collect();
    let (raw, rawa, rawb) = median(&raw_rust.iter().map(|s| s.p50_us).collect::<Vec<_>>());
    println!(
        "\nraw Streams round trip in Rust (XADD → XREADGROUP BLOCK in another process → XADD → \
         XREAD): p50 {raw:.0} µs ({rawa:.0}..{rawb:.0}); ours at `concurrency(1)` is {:.2}x it \
         (median of the per-round ratios)",
        median(&ratio).0
    );
    if !raw_python.is_empty() {
        let (rawp, ..) = median(&raw_python.iter().map(|s| s.p50_us).collect::<Vec<_>>());
        println!("the same from Python (redis-py): p50 {rawp:.0} µs");
    }
    if let Some(p) = &mut peers {
        server.flush();
        let m = p.ask("memory", "MEMORY ");
        println!(
            "Redis memory per queued task: RQ {} B, Celery {} B",
            m[1], m[3]
        );
    }
}

/// Rows measured once: Redis memory, `map`, recovery after a SIGKILL, healthy long tasks.
fn ours_once(server: &Server) {
    server.flush();
    let workers = [
        Worker::start(&server.url, 4, 30_000),
        Worker::start(&server.url, 4, 30_000),
    ];
    let ex = RedisExecutor::builder(&server.url, tasks())
        .build()
        .unwrap();
    let t = Instant::now();
    let n = ex.map(noop, vec![(); 100_000]).chunk_size(100).count();
    println!(
        "map over 100,000 no-op items, chunk_size(100), 2 workers of 4 slots: {:.0} items/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
    drop(workers);
    ex.shutdown();
    drop(ex);
    server.flush();

    // Redis memory per queued task, then what is left after result_ttl.
    std::thread::sleep(Duration::from_millis(200));
    let before = server.used_memory();
    let ex = RedisExecutor::builder(&server.url, tasks())
        .result_ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    let futs: Vec<_> = (0..10_000).map(|_| ex.submit(noop, ()).unwrap()).collect();
    let mut con = server.con();
    while redis::cmd("XLEN")
        .arg("{cf}:queue")
        .query::<u64>(&mut con)
        .unwrap()
        < 10_000
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let queued = server.used_memory();
    println!(
        "Redis memory per queued task: {:.0} B ({} B for 10,000)",
        (queued - before) as f64 / 10_000.0,
        queued - before
    );
    let worker = RedisWorker::builder(&server.url, tasks())
        .max_workers(8)
        .spawn()
        .unwrap();
    for f in futs {
        f.result().unwrap();
    }
    ex.shutdown();
    drop(ex);
    worker.stop();
    worker.join();
    std::thread::sleep(Duration::from_millis(1500));
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    let sizes: Vec<String> = keys
        .iter()
        .map(|k| {
            let bytes: i64 = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(k)
                .query(&mut con)
                .unwrap_or(-1);
            format!("{k} {bytes} B")
        })
        .collect();
    println!(
        "after result_ttl (1 s): keys left: {sizes:?} (the empty queue and its consumer group)"
    );
    server.flush();

    // Recovery: SIGKILL the worker holding a 3 s task; when does it start again?
    let lease = Duration::from_secs(1);
    let mut a = Worker::start(&server.url, 1, lease.as_millis() as u64);
    let _b = Worker::start(&server.url, 1, lease.as_millis() as u64);
    let ex = RedisExecutor::builder(&server.url, tasks())
        .build()
        .unwrap();
    let runs = std::env::temp_dir().join(format!("cf-bench-runs-{}", std::process::id()));
    let _ = std::fs::remove_file(&runs);
    std::thread::sleep(Duration::from_millis(500));
    let path = runs.display().to_string();
    let fut = ex.submit(mark, (path.clone(), "a".into(), 3_000)).unwrap();
    while lines(&runs) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let holder = ex.info().unwrap().running[0].worker.clone();
    let mut b = _b;
    let victim = if holder.contains(&format!("-{}-", a.0.id())) {
        &mut a
    } else {
        &mut b
    };
    let _ = victim.0.kill();
    let _ = victim.0.wait();
    let killed_at = Instant::now();
    while lines(&runs) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let rerun = killed_at.elapsed();
    fut.result().unwrap();
    println!(
        "SIGKILLed worker: its task started again {:.2} s after the kill ({:.1} leases of {:?})",
        rerun.as_secs_f64(),
        rerun.as_secs_f64() / lease.as_secs_f64(),
        lease
    );
    let _ = std::fs::remove_file(&runs);
    let healthy = Worker::start(&server.url, 2, lease.as_millis() as u64);
    let futs: Vec<_> = (0..4)
        .map(|i| {
            ex.submit(mark, (path.clone(), format!("h{i}"), 3_000))
                .unwrap()
        })
        .collect();
    for f in futs {
        f.result().unwrap();
    }
    println!(
        "4 healthy tasks of 3 leases each: {} runs (4 means none ran twice)",
        lines(&runs)
    );
    let _ = std::fs::remove_file(&runs);
    drop(healthy);
    drop(a);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--worker") => {
            let concurrency = args[2].parse().unwrap();
            let lease = Duration::from_millis(args[3].parse().unwrap());
            RedisWorker::builder(&args[1], tasks())
                .max_workers(concurrency)
                .lease(lease)
                .run()
                .unwrap();
            return;
        }
        Some("--echo") => return raw_echo(&args[1]),
        _ => {}
    }
    let only_ours = args.iter().any(|a| a == "--ours");
    if args.iter().any(|a| a == "--round-trips") {
        // For profiling: round trips only, for about 20 s.
        let server = Server::start("bench", false);
        let _workers = [
            Worker::start(&server.url, 4, 30_000),
            Worker::start(&server.url, 4, 30_000),
        ];
        let ex = RedisExecutor::builder(&server.url, tasks())
            .build()
            .unwrap();
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < Duration::from_secs(20) {
            ex.submit(noop, ()).unwrap().result().unwrap();
            n += 1;
        }
        println!("{n} round trips, {:.0} µs each", 20e6 / n as f64);
        return;
    }
    let server = Server::start("bench", false);
    let version: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut server.con())
        .unwrap();
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned();
    println!(
        "redis-server {version}, {} cores\n",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!("## concurrent-futures RedisExecutor against RQ and Celery, like for like\n");
    compare(&server, !only_ours);
    println!("\n## concurrent-futures alone (measured once)\n");
    ours_once(&server);
}
