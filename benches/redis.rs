//! The Redis executor against one local `redis-server`, and against RQ and Celery in the
//! same run (BENCHMARKS.md, "Redis").
//!
//! ```text
//! cargo bench -p concurrent-futures-benches --bench redis            # ours, then the peers
//! cargo bench -p concurrent-futures-benches --bench redis -- --ours  # ours only
//! ```
//!
//! Rows: the raw Streams round trip (XADD → XREADGROUP BLOCK in another process → XADD →
//! XREAD BLOCK), one task's round trip through `submit` + `result` (p50, p99), 10,000 no-op
//! tasks end to end with 2 worker processes, Redis memory per queued task and after
//! `result_ttl`, and recovery: how long after a worker's SIGKILL its task starts again, and
//! how often a healthy task three leases long runs. The peers run from `redis_peers.py` in a
//! virtualenv that this bench creates under `target/` (pip installs RQ and Celery there).

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

fn ours(server: &Server) {
    println!("## concurrent-futures RedisExecutor (redis-server on 127.0.0.1, no persistence)\n");
    let raw = raw_round_trip(server, 2000);
    let raw_p50 = percentile(&raw, 0.5);
    println!(
        "raw Streams round trip (Rust, 2 processes): p50 {:.0} µs, p99 {:.0} µs",
        us(raw_p50),
        us(percentile(&raw, 0.99))
    );
    server.flush();

    // One task's round trip, 2 workers idle and waiting.
    let workers = [
        Worker::start(&server.url, 4, 30_000),
        Worker::start(&server.url, 4, 30_000),
    ];
    let ex = RedisExecutor::builder(&server.url, tasks())
        .build()
        .unwrap();
    for _ in 0..200 {
        ex.submit(noop, ()).unwrap().result().unwrap();
    }
    let mut rt: Vec<Duration> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            ex.submit(noop, ()).unwrap().result().unwrap();
            t.elapsed()
        })
        .collect();
    rt.sort();
    let p50 = percentile(&rt, 0.5);
    println!(
        "one task's round trip: p50 {:.0} µs, p99 {:.0} µs ({:.2}x the raw round trip)",
        us(p50),
        us(percentile(&rt, 0.99)),
        p50.as_secs_f64() / raw_p50.as_secs_f64()
    );

    // 10,000 no-op tasks end to end: submit all, then wait for all.
    let mut rates = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let futs: Vec<_> = (0..10_000).map(|_| ex.submit(noop, ()).unwrap()).collect();
        for f in futs {
            f.result().unwrap();
        }
        rates.push(10_000.0 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "10,000 no-op tasks end to end, 2 workers: {:.0} tasks/s (median of 5; min {:.0}, max {:.0})",
        rates[2], rates[0], rates[4]
    );
    let t = Instant::now();
    let n = ex.map(noop, vec![(); 100_000]).chunk_size(100).count();
    println!(
        "map over 100,000 no-op items, chunk_size(100): {:.0} items/s",
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
        .concurrency(8)
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

fn peers(server: &Server) {
    println!("\n## RQ and Celery, same server (benches/redis_peers.py)\n");
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
            return;
        }
    }
    server.flush();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("redis_peers.py");
    let status = Command::new(&python)
        .arg(&script)
        .arg(server.port.to_string())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status();
    if !status.is_ok_and(|s| s.success()) {
        println!("(the peers' script failed)");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--worker") => {
            let concurrency = args[2].parse().unwrap();
            let lease = Duration::from_millis(args[3].parse().unwrap());
            RedisWorker::builder(&args[1], tasks())
                .concurrency(concurrency)
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
    ours(&server);
    if !only_ours {
        peers(&server);
    }
}
