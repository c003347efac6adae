//! The Redis executor against a real `redis-server`: each test starts its own on a free
//! port in a temporary directory and kills it at the end. Worker processes are this test
//! binary run again (`worker_process`, an ignored test that acts as a worker).
//!
//! Without `redis-server` on the PATH the tests say so on stderr and pass without running,
//! except under `CI=true`, where a missing server is a failure.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use concurrent_futures::redis::{RedisExecutor, RedisWorker, TaskOptions, Tasks};
use concurrent_futures::{
    Executor, MapError, ReturnWhen, SubmitError, TaskError, as_completed, wait,
};

// Worker processes of the process-mode test start as this binary's worker entry point.
#[cfg(feature = "process")]
concurrent_futures::worker_test!();

// ---------------------------------------------------------------------------------------
// Tasks shared by the client and the worker processes.

fn double(x: u64) -> u64 {
    x * 2
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn boom(x: u32) -> u32 {
    panic!("boom {x}")
}

fn exit_now(code: i32) -> i32 {
    std::process::exit(code)
}

fn pid(_: ()) -> u32 {
    std::thread::sleep(Duration::from_millis(5));
    std::process::id()
}

/// Appends a line to `path` (a run counter that survives the process), then sleeps `ms`.
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

/// Fails (panics) until it has been run `n` times, counted in `path`.
fn flaky(job: (String, usize)) -> usize {
    let (path, n) = job;
    let runs = std::fs::read_to_string(&path).map_or(0, |s| s.lines().count()) + 1;
    std::fs::write(&path, "x\n".repeat(runs)).unwrap();
    assert!(runs > n, "run {runs} fails");
    runs
}

/// The time it started, in ms since the epoch.
fn started_at(_: ()) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Appends the time it started (ms) to the file `path`.
fn tick(path: String) -> u64 {
    let at = started_at(());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(format!("{at}\n").as_bytes()).unwrap();
    at
}

/// Waits until the file `path` exists (at most a minute), then returns its length.
fn wait_for_file(path: String) -> u64 {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if let Ok(m) = std::fs::metadata(&path) {
            return m.len();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("{path} never appeared")
}

fn tasks() -> Tasks {
    Tasks::new()
        .add("wait_for_file/v1", wait_for_file)
        .add("started_at/v1", started_at)
        .add("tick/v1", tick)
        .add("double/v1", double)
        .add("sleep/v1", sleep_ms)
        .add("boom/v1", boom)
        .add("exit/v1", exit_now)
        .add("pid/v1", pid)
        .add("mark/v1", mark)
        .add("flaky/v1", flaky)
}

/// A task only the client knows (an older worker build does not).
fn newer(x: u8) -> u8 {
    x
}

// ---------------------------------------------------------------------------------------
// The server and the worker processes.

mod redis_server;

use redis_server::RedisServer;

fn have_redis() -> bool {
    redis_server::available()
}

/// A server of this test's own, or `None` (and a notice) when `redis-server` is missing.
fn start_server(aof: bool) -> Option<RedisServer> {
    have_redis().then(|| RedisServer::start("test", aof))
}

impl RedisServer {
    fn executor(&self) -> RedisExecutor {
        RedisExecutor::builder(&self.url, tasks()).build().unwrap()
    }

    fn worker(&self) -> RedisWorker {
        RedisWorker::builder(&self.url, tasks())
            .max_workers(4)
            .spawn()
            .unwrap()
    }
}

/// A worker in a process of its own: this test binary running `worker_process`.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn start(url: &str, lease: Duration, concurrency: usize) -> WorkerProcess {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "worker_process", "--ignored", "--nocapture"])
            .env("CF_TEST_WORKER", url)
            .env("CF_TEST_LEASE_MS", lease.as_millis().to_string())
            .env("CF_TEST_CONCURRENCY", concurrency.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        WorkerProcess(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Not a test: the body of a worker process that the other tests start.
#[test]
#[ignore = "the worker process of the Redis tests; they run it"]
fn worker_process() {
    let Ok(url) = std::env::var("CF_TEST_WORKER") else {
        return;
    };
    let lease = std::env::var("CF_TEST_LEASE_MS").unwrap().parse().unwrap();
    let n = std::env::var("CF_TEST_CONCURRENCY")
        .unwrap()
        .parse()
        .unwrap();
    RedisWorker::builder(&url, tasks())
        .lease(Duration::from_millis(lease))
        .max_workers(n)
        .run()
        .unwrap();
}

fn temp_file(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "cf-redis-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------
// The API.

#[test]
fn submit_map_as_completed_wait_callbacks_and_await() {
    let Some(server) = start_server(false) else {
        return;
    };
    let _worker = server.worker();
    let ex = server.executor();

    assert_eq!(ex.submit(double, 21).unwrap().result().unwrap(), 42);
    assert_eq!(
        Executor::apply(&ex, double, 4).unwrap().result().unwrap(),
        8
    );
    // A capture-free closure is a plain function too, if it is registered.
    let inc = |x: u64| x + 1;
    let with_closure = RedisExecutor::builder(&server.url, tasks().add("inc/v1", inc))
        .build()
        .unwrap();
    assert!(with_closure.submit(inc, 1).is_ok());
    with_closure.shutdown_with(false, true);

    // map: input order, with chunks and without, and the same through the Executor trait.
    let out: Vec<u64> = ex.map(double, 0..500).collect::<Result<_, _>>().unwrap();
    assert_eq!(out, (0..500).map(|x| x * 2).collect::<Vec<_>>());
    let out: Vec<u64> = ex
        .map(double, 0..1000)
        .chunk_size(64)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(out[999], 1998);
    let mut un: Vec<u64> = ex
        .map_unordered_fn(double, 0..100)
        .collect::<Result<_, _>>()
        .unwrap();
    un.sort_unstable();
    assert_eq!(un, (0..100).map(|x| x * 2).collect::<Vec<_>>());

    // as_completed: completion order.
    let futs: Vec<_> = [400, 10, 200]
        .into_iter()
        .map(|ms| ex.submit(sleep_ms, ms).unwrap())
        .collect();
    let order: Vec<u64> = as_completed(futs).map(|f| f.result().unwrap()).collect();
    assert_eq!(order, [10, 200, 400]);

    // wait(FIRST_COMPLETED), callbacks, .await
    let slow = ex.submit(sleep_ms, 500).unwrap();
    let fast = ex.submit(sleep_ms, 1).unwrap();
    let called = Arc::new(AtomicUsize::new(0));
    let c = called.clone();
    fast.add_done_callback(move |f| {
        assert!(f.done());
        c.fetch_add(1, Ordering::SeqCst);
    });
    let both = [slow, fast];
    let (done, _) = wait(&both, None, ReturnWhen::FirstCompleted);
    assert!(!done.is_empty());
    eventually("the callback", || called.load(Ordering::SeqCst) == 1);
    let fut = ex.submit(double, 5).unwrap();
    assert_eq!(futures::executor::block_on(fut).unwrap(), 10);
    let [slow, _] = both;
    assert_eq!(slow.result().unwrap(), 500);
    ex.shutdown();
    assert!(matches!(
        ex.submit(double, 1),
        Err(SubmitError::Shutdown(_))
    ));
}

#[test]
fn map_timeout_counts_from_the_call_and_result_timeout_never_cancels() {
    let Some(server) = start_server(false) else {
        return;
    };
    let _worker = server.worker();
    let ex = server.executor();
    let t = Instant::now();
    let mut it = ex
        .map(sleep_ms, vec![10, 10, 3_000, 10])
        .timeout(Duration::from_millis(800));
    assert_eq!(it.next().unwrap().unwrap(), 10);
    assert_eq!(it.next().unwrap().unwrap(), 10);
    assert!(
        it.next().unwrap().is_err(),
        "the third is past the deadline"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    drop(it);

    let fut = ex.submit(sleep_ms, 300).unwrap();
    let fut = fut.result_timeout(Duration::from_millis(10)).unwrap_err();
    let concurrent_futures::ResultTimeoutError::Timeout(fut) = fut else {
        panic!("expected a timeout");
    };
    assert!(!fut.cancelled());
    assert_eq!(fut.result().unwrap(), 300, "the task ran on");
}

#[test]
fn task_errors_unknown_names_and_wrong_types_are_typed() {
    let Some(server) = start_server(false) else {
        return;
    };
    let _worker = server.worker();
    // The client knows one task more than the workers.
    let ex = RedisExecutor::builder(&server.url, tasks().add("newer/v1", newer))
        .build()
        .unwrap();
    match ex.submit(boom, 7).unwrap().result() {
        // With where it panicked, as the process pool says it.
        Err(TaskError::Panicked(m)) => {
            assert!(m.starts_with("boom 7 (at tests/redis.rs:"), "{m}");
            assert!(m.contains("thread '"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    match ex.submit(newer, 1).unwrap().result() {
        Err(TaskError::Rejected(m)) => assert!(m.contains("newer/v1"), "{m}"),
        other => panic!("{other:?}"),
    }
    fn unregistered(x: u8) -> u8 {
        x + 1
    }
    let err = ex.submit(unregistered, 3).unwrap_err();
    assert!(matches!(err, SubmitError::Unregistered(_)), "{err}");
    let (f, arg) = err.into_inner();
    assert_eq!(f(arg), 4);
    // An argument above the payload limit is refused at submit.
    let small = RedisExecutor::builder(&server.url, tasks())
        .max_payload_bytes(10)
        .build()
        .unwrap();
    let err = small.submit(sleep_ms, 12_345_678_901).unwrap_err();
    assert!(matches!(err, SubmitError::Rejected { .. }), "{err}");
    // A chunk's items fail one by one.
    let out: Vec<_> = ex.map(boom, [1, 2]).chunk_size(2).collect();
    assert_eq!(out.len(), 2);
    for (r, x) in out.iter().zip([1, 2]) {
        match r {
            Err(MapError::Task(TaskError::Panicked(m))) => {
                assert!(
                    m.starts_with(&format!("boom {x} (at tests/redis.rs:")),
                    "{m}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Every log record of this test binary (the logger is process-wide).
static LOGGED: std::sync::Mutex<Vec<(log::Level, String)>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.target().starts_with("concurrent_futures") {
            let line = record.args().to_string();
            LOGGED.lock().unwrap().push((record.level(), line));
        }
    }
    fn flush(&self) {}
}

#[test]
fn a_worker_logs_each_task_its_failures_and_its_shutdown() {
    let Some(server) = start_server(false) else {
        return;
    };
    static LOGGER: Capture = Capture;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Debug);
    let worker = server.worker();
    let ex = server.executor();
    let ok = ex.submit(double, 5).unwrap();
    let ok_id = ok.task_id().unwrap();
    assert_eq!(ok.result(), Ok(10));
    let bad = ex.submit(boom, 3).unwrap();
    let bad_id = bad.task_id().unwrap();
    assert!(bad.result().is_err());
    worker.stop();
    worker.join();
    let logged = LOGGED.lock().unwrap().clone();
    let has = |level: log::Level, needles: &[&str]| {
        logged
            .iter()
            .any(|(l, line)| *l == level && needles.iter().all(|n| line.contains(n)))
    };
    let ok_id = ok_id.to_string();
    let bad_id = bad_id.to_string();
    assert!(
        has(log::Level::Debug, &[&ok_id, "double/v1", "started"]),
        "{logged:?}"
    );
    assert!(has(log::Level::Debug, &[&ok_id, "done in"]), "{logged:?}");
    assert!(
        has(
            log::Level::Warn,
            &[
                &bad_id,
                "boom/v1",
                "failed after",
                "panic",
                "boom 3 (at tests/redis.rs:"
            ]
        ),
        "{logged:?}"
    );
    assert!(has(log::Level::Info, &["stopping"]), "{logged:?}");
    assert!(
        has(
            log::Level::Info,
            &["stopped: every task it held is answered"]
        ),
        "{logged:?}"
    );
}

#[test]
fn retries_are_opt_in_and_time_limits_are_enforced() {
    let Some(server) = start_server(false) else {
        return;
    };
    let _worker = server.worker();
    let ex = server.executor();
    let once = temp_file("flaky");
    let r = ex
        .submit(flaky, (once.display().to_string(), 2))
        .unwrap()
        .result();
    assert!(matches!(r, Err(TaskError::Panicked(_))), "{r:?}");
    assert_eq!(lines(&once).len(), 1, "not retried unless asked");

    let retried = temp_file("flaky");
    let opts = TaskOptions::new().retries(3, Duration::from_millis(20));
    let runs = ex
        .submit_with(flaky, (retried.display().to_string(), 2), opts)
        .unwrap()
        .result()
        .unwrap();
    assert_eq!(runs, 3, "failed twice, succeeded on the third run");

    let limited = TaskOptions::new().time_limit(Duration::from_millis(100));
    let r = ex.submit_with(sleep_ms, 2_000, limited).unwrap().result();
    assert!(matches!(r, Err(TaskError::TimedOut)), "{r:?}");
    let _ = std::fs::remove_file(once);
    let _ = std::fs::remove_file(retried);
}

// ---------------------------------------------------------------------------------------
// Many workers, dead workers, long tasks.

#[test]
fn worker_processes_share_the_load() {
    let Some(server) = start_server(false) else {
        return;
    };
    let workers: Vec<_> = (0..3)
        .map(|_| WorkerProcess::start(&server.url, Duration::from_secs(5), 2))
        .collect();
    let ex = server.executor();
    let pids: Vec<u32> = ex
        .map(pid, vec![(); 300])
        .collect::<Result<_, _>>()
        .unwrap();
    let mut per: HashMap<u32, usize> = HashMap::new();
    for p in pids {
        *per.entry(p).or_default() += 1;
    }
    let ours: Vec<u32> = workers.iter().map(WorkerProcess::pid).collect();
    assert!(per.keys().all(|p| ours.contains(p)), "{per:?} vs {ours:?}");
    assert!(per.len() >= 2, "the load was not shared: {per:?}");
}

/// Kills the worker process that holds the running task `tag` (found by its pid in the
/// consumer name).
fn kill_holder(ex: &RedisExecutor, workers: &mut [WorkerProcess]) -> u32 {
    let mut holder = String::new();
    eventually("a worker to hold the task", || {
        holder = ex
            .info()
            .unwrap()
            .running
            .first()
            .map(|r| r.worker.clone())
            .unwrap_or_default();
        !holder.is_empty()
    });
    let w = workers
        .iter_mut()
        .find(|w| holder.contains(&format!("-{}-", w.pid())))
        .unwrap_or_else(|| panic!("no worker process named {holder}"));
    let pid = w.pid();
    w.kill();
    pid
}

#[test]
fn a_sigkilled_workers_task_runs_again_elsewhere_and_completes_once() {
    let Some(server) = start_server(false) else {
        return;
    };
    let lease = Duration::from_millis(800);
    let mut workers: Vec<_> = (0..2)
        .map(|_| WorkerProcess::start(&server.url, lease, 1))
        .collect();
    let ex = server.executor();
    let runs = temp_file("killed");
    let fut = ex
        .submit(mark, (runs.display().to_string(), "job".into(), 1_500))
        .unwrap();
    // Killed once it has started (it writes its line first): held is not yet started.
    eventually("the task to start", || lines(&runs).len() == 1);
    let t = Instant::now();
    let killed = kill_holder(&ex, &mut workers);
    assert_eq!(fut.result().unwrap(), "job");
    let took = t.elapsed();
    assert_eq!(
        lines(&runs).len(),
        2,
        "ran on the killed worker, then once more"
    );
    eprintln!("worker {killed} killed; re-run done {took:.1?} after the kill (lease {lease:?})");
    eventually("info to show the killed worker as silent", || {
        let info = ex.info().unwrap();
        let name = format!("-{killed}-");
        info.workers
            .iter()
            .any(|w| w.name.contains(&name) && !w.alive())
            && info.workers.iter().filter(|w| w.alive()).count() == 1
    });

    // At the cap it fails as lost: every holder is killed.
    let capped = RedisExecutor::builder(&server.url, tasks())
        .max_deliveries(2)
        .build()
        .unwrap();
    workers.push(WorkerProcess::start(&server.url, lease, 1));
    workers.push(WorkerProcess::start(&server.url, lease, 1));
    let runs2 = temp_file("lost");
    let fut = capped
        .submit(mark, (runs2.display().to_string(), "doomed".into(), 60_000))
        .unwrap();
    for round in 0..2 {
        eventually("the next delivery", || lines(&runs2).len() > round);
        kill_holder(&capped, &mut workers);
    }
    match fut.result() {
        Err(TaskError::WorkerLost(m)) => assert!(m.contains("delivered 2 times"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(lines(&runs2).len(), 2);
    let info = capped.info().unwrap();
    assert!(info.dead.iter().any(|d| d.why == "lost"), "{info}");
    let _ = std::fs::remove_file(runs);
    let _ = std::fs::remove_file(runs2);
}

#[test]
fn a_task_three_leases_long_runs_exactly_once() {
    let Some(server) = start_server(false) else {
        return;
    };
    let lease = Duration::from_millis(600);
    let _workers: Vec<_> = (0..2)
        .map(|_| WorkerProcess::start(&server.url, lease, 2))
        .collect();
    let ex = server.executor();
    let runs = temp_file("long");
    let futs: Vec<_> = (0..3)
        .map(|i| {
            ex.submit(mark, (runs.display().to_string(), format!("t{i}"), 1_800))
                .unwrap()
        })
        .collect();
    for f in futs {
        f.result().unwrap();
    }
    let mut seen = lines(&runs);
    seen.sort();
    assert_eq!(seen, ["t0", "t1", "t2"], "each ran exactly once");
    let _ = std::fs::remove_file(runs);
}

// ---------------------------------------------------------------------------------------
// Cancel and shutdown.

#[test]
fn cancel_removes_a_queued_task_but_not_a_running_one() {
    let Some(server) = start_server(false) else {
        return;
    };
    let ex = server.executor();
    let queued = ex.submit(double, 1).unwrap();
    // Wait until it is in Redis (the writer sends it).
    let mut con = server.con();
    eventually("the entry", || {
        redis::cmd("XLEN")
            .arg("{cf}:queue")
            .query::<u64>(&mut con)
            .unwrap()
            == 1
    });
    assert!(queued.cancel());
    assert!(queued.cancelled());
    let len: u64 = redis::cmd("XLEN")
        .arg("{cf}:queue")
        .query(&mut con)
        .unwrap();
    assert_eq!(len, 0, "the entry was removed from the queue");
    assert_eq!(ex.pending(), 0);

    let _worker = server.worker();
    let running = ex.submit(sleep_ms, 400).unwrap();
    eventually("the task to start", || {
        !ex.info().unwrap().running.is_empty()
    });
    assert!(!running.cancel());
    assert!(running.running());
    assert_eq!(running.result().unwrap(), 400);
}

#[test]
fn shutdown_cancel_futures_cancels_what_no_worker_took() {
    let Some(server) = start_server(false) else {
        return;
    };
    let ex = server.executor();
    let futs: Vec<_> = (0..20).map(|i| ex.submit(double, i).unwrap()).collect();
    ex.shutdown_with(true, true);
    assert!(futs.iter().all(|f| f.cancelled()));
    let len: u64 = redis::cmd("XLEN")
        .arg("{cf}:queue")
        .query(&mut server.con())
        .unwrap();
    assert_eq!(len, 0);
}

// ---------------------------------------------------------------------------------------
// Redis going away, hostile entries, keys, permissions.

#[test]
fn redis_killed_and_restarted_with_aof_loses_nothing() {
    let Some(mut server) = start_server(true) else {
        return;
    };
    let _workers: Vec<_> = (0..2)
        .map(|_| WorkerProcess::start(&server.url, Duration::from_secs(2), 4))
        .collect();
    let ex = server.executor();
    let n = 300u64;
    let futs: Vec<_> = (0..n)
        .map(|i| ex.submit(sleep_ms, i % 7 + 5).unwrap())
        .collect();
    eventually("some results", || {
        futs.iter().filter(|f| f.done()).count() > 20
    });
    server.kill();
    std::thread::sleep(Duration::from_millis(500));
    let done_before = futs.iter().filter(|f| f.done()).count();
    server.launch();
    let mut by_value: HashMap<u64, usize> = HashMap::new();
    for (i, f) in futs.into_iter().enumerate() {
        let v = f.result().unwrap();
        assert_eq!(v, i as u64 % 7 + 5);
        *by_value.entry(v).or_default() += 1;
    }
    eprintln!("{done_before} of {n} were done when Redis was killed; all {n} completed");
    assert!(done_before < n as usize, "the restart happened mid-run");
}

#[test]
fn garbage_entries_are_dead_lettered_and_workers_survive() {
    let Some(server) = start_server(false) else {
        return;
    };
    let worker = RedisWorker::builder(&server.url, tasks())
        .max_workers(2)
        .max_payload_bytes(1024)
        .spawn()
        .unwrap();
    let ex = server.executor();
    let mut con = server.con();
    let big = "9".repeat(5000);
    let bad: Vec<Vec<(&str, &[u8])>> = vec![
        vec![
            ("v", b"2"),
            ("fn", b"double/v1"),
            ("c", b"x"),
            ("id", b"garbage-1"),
            ("a", b"{not json"),
        ],
        vec![
            ("v", b"2"),
            ("fn", b"double/v1"),
            ("c", b"x"),
            ("id", b"garbage-2"),
            ("a", b"\"a string\""),
        ],
        vec![
            ("v", b"2"),
            ("fn", b"double/v1"),
            ("c", b"x"),
            ("id", b"garbage-3"),
            ("a", big.as_bytes()),
        ],
        vec![
            ("v", b"2"),
            ("fn", b"rm -rf /"),
            ("c", b"x"),
            ("id", b"garbage-4"),
            ("a", b"1"),
        ],
        vec![
            ("v", b"2"),
            ("fn", b"nope/v9"),
            ("c", b"x"),
            ("id", b"garbage-5"),
            ("a", b"1"),
        ],
        vec![
            ("v", b"2"),
            ("fn", b"double/v1"),
            ("c", b"../../etc"),
            ("id", b"garbage-6"),
            ("a", b"1"),
        ],
        vec![
            ("v", b"1"),
            ("fn", b"double/v1"),
            ("c", b"x"),
            ("id", b"garbage-7"),
            ("a", b"1"),
        ],
        vec![("junk", b"\xff\xfe\x00\x01")],
        vec![
            ("v", b"2"),
            ("fn", b"double/v1"),
            ("c", b"x"),
            ("id", b"garbage-9"),
            ("a", b"1"),
            ("tries", b"-3"),
        ],
        vec![
            ("v", b"2"),
            ("fn", b"double/v1"),
            ("c", b"x"),
            ("id", b"garbage-10"),
            ("a", &[b'['; 10_000][..1000]),
        ],
    ];
    // Workers answer only clients whose reply stream exists: client "x" is there.
    let _: String = redis::cmd("XADD")
        .arg("{cf}:reply:x")
        .arg("*")
        .arg("s")
        .arg("hello")
        .query(&mut con)
        .unwrap();
    for fields in &bad {
        let mut cmd = redis::cmd("XADD");
        cmd.arg("{cf}:queue").arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        let _: String = cmd.query(&mut con).unwrap();
    }
    // A good task after the garbage completes: the worker lives.
    assert_eq!(ex.submit(double, 4).unwrap().result().unwrap(), 8);
    eventually("every bad entry to be dead-lettered", || {
        ex.info().unwrap().dead_total == bad.len() as u64
    });
    let info = ex.info().unwrap();
    assert_eq!(info.queued, 0, "{info}");
    assert_eq!(info.running_total, 0, "nothing left pending: no retry loop");
    assert!(info.dead.iter().all(|d| d.why == "rejected"), "{info}");
    // Replies went only to the valid route "x", never to a key built from "../../etc".
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert!(keys.iter().all(|k| k.starts_with("{cf}:")), "{keys:?}");
    assert!(keys.iter().any(|k| k == "{cf}:reply:x"), "{keys:?}");
    worker.stop();
    worker.join();
}

#[test]
fn every_key_of_a_finished_run_has_a_ttl() {
    let Some(server) = start_server(false) else {
        return;
    };
    let worker = server.worker();
    let ex = server.executor();
    let _: Vec<_> = ex.map(double, 0..50).collect();
    let _ = ex.submit(boom, 1).unwrap().result();
    let mut con = server.con();
    let _: String = redis::cmd("XADD")
        .arg("{cf}:queue")
        .arg("*")
        .arg("junk")
        .arg("1")
        .query(&mut con)
        .unwrap();
    eventually("the dead letter", || ex.info().unwrap().dead_total == 1);
    // A reply stream of a client that went away without reading.
    let gone = RedisExecutor::builder(&server.url, tasks())
        .build()
        .unwrap();
    let fut = gone.submit(sleep_ms, 50).unwrap();
    gone.shutdown_with(false, false);
    drop(gone);
    fut.result().unwrap();
    ex.shutdown();
    worker.stop();
    worker.join();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert!(!keys.is_empty());
    for k in &keys {
        let ttl: i64 = redis::cmd("PTTL").arg(k).query(&mut con).unwrap();
        assert!(ttl > 0, "key {k} has no TTL ({ttl})");
    }
    let queue_len: u64 = redis::cmd("XLEN")
        .arg("{cf}:queue")
        .query(&mut con)
        .unwrap();
    assert_eq!(queue_len, 0, "answered entries are deleted from the queue");
}

/// The ACL of the README's "Many machines" section, applied as written.
const ACL: &str = "on >s3cret resetkeys ~{cf}:* resetchannels -@all \
    +xadd +xreadgroup +xread +xack +xdel +xautoclaim +xclaim +xpending +xlen +xrange \
    +xrevrange +xgroup|create +xgroup|delconsumer +xinfo|consumers +evalsha +eval \
    +script|load +pexpire +del +exists +zadd +zrem +zrange +zrangebyscore +zscore \
    +zremrangebyscore +hset +hget +hgetall +hkeys +hstrlen +hdel +hexists +hincrby +hmget +time +sadd +smembers +get +set +multi \
    +exec +ping +hello +client|setname +select";

#[test]
fn everything_runs_under_the_documented_least_privilege_user() {
    let Some(server) = start_server(false) else {
        return;
    };
    let mut admin = server.con();
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg("worker");
    for part in ACL.split_whitespace() {
        cmd.arg(part);
    }
    let _: () = cmd.query(&mut admin).unwrap();
    let url = format!("redis://worker:s3cret@127.0.0.1:{}/", server.port);
    let worker = RedisWorker::builder(&url, tasks())
        .max_workers(2)
        .spawn()
        .unwrap();
    let ex = RedisExecutor::builder(&url, tasks()).build().unwrap();
    assert_eq!(ex.submit(double, 2).unwrap().result().unwrap(), 4);
    let out: Vec<u64> = ex
        .map(double, 0..20)
        .chunk_size(5)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(out.len(), 20);
    let queued = {
        worker.stop();
        worker.join();
        ex.submit(double, 9).unwrap()
    };
    eventually("the entry", || ex.info().unwrap().queued == 1);
    assert!(queued.cancel(), "cancel works under the ACL");
    let info = ex.info().unwrap();
    assert_eq!(info.queued, 0);
    // Attach, status and schedules too.
    let id = queued.task_id().unwrap();
    assert_eq!(
        ex.status(&id).unwrap(),
        concurrent_futures::redis::TaskStatus::Cancelled
    );
    assert!(ex.attach::<u64>(&id).unwrap().cancelled());
    let every = concurrent_futures::redis::Schedule::every(Duration::from_secs(3600));
    ex.schedule("acl-hourly", every, double, 1).unwrap();
    assert_eq!(ex.schedules().unwrap()[0].name, "acl-hourly");
    assert!(ex.unschedule("acl-hourly").unwrap());
    // The history (the SAMPLE script needs TIME and HMGET) and the answered counts
    // (HINCRBY in FINISH), which a missing grant would silently leave empty.
    eventually("a sample", || !ex.history().unwrap().is_empty());
    eventually("the counts", || {
        let mut admin = server.con();
        redis::cmd("HGET")
            .arg("{cf}:counts")
            .arg("ok")
            .query::<Option<u64>>(&mut admin)
            .unwrap()
            .is_some()
    });
    // Dead letters can be deleted and retried under the same grants.
    assert_eq!(ex.delete_dead(&["1-1"]).unwrap(), 0);
    assert_eq!(ex.retry_dead(&["1-1"]).unwrap(), 0);
    // And the user can do nothing else.
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let denied = redis::cmd("GET")
        .arg("{cf}:queue")
        .query::<Option<String>>(&mut con);
    assert!(denied.is_err());
    let denied = redis::cmd("XLEN").arg("other").query::<u64>(&mut con);
    assert_eq!(denied.unwrap_err().code(), Some("NOPERM"));
    let denied = redis::cmd("FLUSHALL").query::<()>(&mut con);
    assert_eq!(denied.unwrap_err().code(), Some("NOPERM"));
    // A wrong password is a setup error, not a hang.
    let bad = format!("redis://worker:wrong@127.0.0.1:{}/", server.port);
    assert!(RedisExecutor::builder(&bad, tasks()).build().is_err());
}

#[test]
fn a_thread_mode_worker_reports_hung_tasks_and_carries_on() {
    let Some(server) = start_server(false) else {
        return;
    };
    let _worker = server.worker();
    let ex = server.executor();
    let limited = TaskOptions::new().time_limit(Duration::from_millis(50));
    let hung: Vec<_> = (0..6)
        .map(|_| ex.submit_with(sleep_ms, 1_000, limited.clone()).unwrap())
        .collect();
    for f in hung {
        let r = f.result();
        assert!(matches!(r, Err(TaskError::TimedOut)), "{r:?}");
    }
    assert_eq!(ex.submit(double, 1).unwrap().result().unwrap(), 2);
}

#[cfg(feature = "process")]
#[test]
fn a_process_mode_worker_survives_crashing_and_hung_tasks() {
    let Some(server) = start_server(false) else {
        return;
    };
    concurrent_futures::init();
    let worker = RedisWorker::builder(&server.url, tasks())
        .processes(true)
        .max_workers(2)
        .spawn()
        .unwrap();
    let ex = server.executor();
    match ex.submit(exit_now, 3).unwrap().result() {
        Err(TaskError::WorkerDied(how)) => assert!(how.contains("code 3"), "{how}"),
        other => panic!("{other:?}"),
    }
    let limited = TaskOptions::new().time_limit(Duration::from_millis(200));
    let t = Instant::now();
    let r = ex.submit_with(sleep_ms, 60_000, limited).unwrap().result();
    assert!(matches!(r, Err(TaskError::TimedOut)), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the hung task was killed"
    );
    // A chunk with a crash in it fails only that item.
    let out: Vec<_> = ex.map(exit_now, [0, 5]).chunk_size(2).collect();
    assert_eq!(out.len(), 2);
    assert!(
        out.iter().all(Result::is_err),
        "both items exit their process"
    );
    let out: Vec<u64> = ex
        .map(double, 0..20)
        .chunk_size(5)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(out[19], 38, "the worker carries on");
    worker.stop();
    worker.join();
}

// ---------------------------------------------------------------------------------------
// TLS (feature redis-tls): a private CA, a server that requires client certificates.

#[cfg(feature = "redis-tls")]
fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl (apt-get install openssl)")
        .success();
    assert!(ok, "openssl {args:?}");
}

#[cfg(feature = "redis-tls")]
#[test]
fn rediss_with_a_private_ca_and_client_certificates() {
    if !have_redis() {
        return;
    }
    let dir = temp_file("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=cf-test-ca",
    ]);
    openssl(&dir, &ca);
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        let (key, csr, crt, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
        openssl(&dir, &req);
        std::fs::write(
            dir.join(&ext),
            format!(
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
                 keyUsage=digitalSignature\nextendedKeyUsage={usage}\n"
            ),
        )
        .unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
    let port = redis_server::free_port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--save",
            "",
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "yes"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let url = format!("rediss://localhost:{port}/");
    let ex = (0..200)
        .find_map(|_| {
            let ex = RedisExecutor::builder(&url, tasks())
                .tls_root_certificate(read("ca.crt"))
                .tls_client_certificate(read("client.crt"), read("client.key"))
                .build();
            if ex.is_err() {
                std::thread::sleep(Duration::from_millis(50));
            }
            ex.ok()
        })
        .expect("a TLS connection with the private CA and a client certificate");
    let worker = RedisWorker::builder(&url, tasks())
        .tls_root_certificate(read("ca.crt"))
        .tls_client_certificate(read("client.crt"), read("client.key"))
        .max_workers(2)
        .spawn()
        .unwrap();
    assert_eq!(ex.submit(double, 21).unwrap().result().unwrap(), 42);
    // Without the client certificate, or without trusting the CA, no connection.
    let no_client_cert = RedisExecutor::builder(&url, tasks())
        .tls_root_certificate(read("ca.crt"))
        .build();
    assert!(no_client_cert.is_err());
    let unknown_ca = RedisExecutor::builder(&url, tasks())
        .tls_client_certificate(read("client.crt"), read("client.key"))
        .build();
    assert!(
        unknown_ca.is_err(),
        "the Mozilla roots do not know the test CA"
    );
    // Plain TCP to the TLS port gets nowhere either.
    let plain = format!("redis://localhost:{port}/");
    assert!(RedisExecutor::builder(&plain, tasks()).build().is_err());
    ex.shutdown();
    worker.stop();
    worker.join();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// Races, each run many times with both outcomes seen.

#[test]
fn cancel_races_a_worker_taking_the_task_and_a_cancelled_task_never_runs() {
    let Some(server) = start_server(false) else {
        return;
    };
    let _worker = server.worker();
    let ex = server.executor();
    let runs = temp_file("cancel-race");
    let path = runs.display().to_string();
    let (mut cancelled, mut ran) = (Vec::new(), Vec::new());
    for round in 0..30u64 {
        // Ten tasks of 2 ms for 4 slots: some start at once, some wait in the queue.
        let futs: Vec<_> = (0..10)
            .map(|i| {
                let tag = format!("r{round}-{i}");
                (
                    tag.clone(),
                    ex.submit(mark, (path.clone(), tag, 2)).unwrap(),
                )
            })
            .collect();
        // A varying pause, so that cancels land before, during and after the takes.
        std::thread::sleep(Duration::from_micros(round * 200));
        let outcomes: Vec<_> = futs
            .into_iter()
            .map(|(tag, fut)| (tag, fut.cancel(), fut))
            .collect();
        for (tag, was_cancelled, fut) in outcomes {
            if was_cancelled {
                assert!(fut.cancelled());
                cancelled.push(tag);
            } else {
                assert_eq!(fut.result().unwrap(), tag);
                ran.push(tag);
            }
        }
    }
    ex.shutdown();
    let seen = lines(&runs);
    for t in &cancelled {
        assert!(!seen.contains(t), "cancelled task {t} ran");
    }
    for t in &ran {
        assert_eq!(seen.iter().filter(|s| *s == t).count(), 1, "{t} ran once");
    }
    eprintln!(
        "{} cancelled before a worker took them, {} ran",
        cancelled.len(),
        ran.len()
    );
    assert!(
        !cancelled.is_empty() && !ran.is_empty(),
        "both outcomes occur"
    );
    let _ = std::fs::remove_file(runs);
}

#[test]
fn submits_racing_shutdown_either_complete_or_come_back() {
    let Some(server) = start_server(false) else {
        return;
    };
    let _worker = server.worker();
    for round in 0..8u64 {
        let ex = Arc::new(server.executor());
        let submitters: Vec<_> = (0..4)
            .map(|t| {
                let ex = ex.clone();
                std::thread::spawn(move || {
                    let (mut accepted, mut refused) = (Vec::new(), 0);
                    for i in 0..200u64 {
                        match ex.submit(double, t * 1000 + i) {
                            Ok(fut) => accepted.push((t * 1000 + i, fut)),
                            Err(e) => {
                                let (f, arg) = e.into_inner();
                                assert_eq!(f(arg), 2 * (t * 1000 + i), "the task came back");
                                refused += 1;
                            }
                        }
                    }
                    (accepted, refused)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(round * 300));
        ex.shutdown();
        let mut total = (0, 0);
        for s in submitters {
            let (accepted, refused) = s.join().unwrap();
            total.1 += refused;
            for (x, fut) in accepted {
                assert!(
                    fut.done(),
                    "shutdown(wait) returned before an accepted task completed"
                );
                assert_eq!(fut.result().unwrap(), 2 * x);
                total.0 += 1;
            }
        }
        assert_eq!(total.0 + total.1, 800);
        eprintln!("round {round}: {} accepted, {} refused", total.0, total.1);
    }
}

#[test]
fn a_key_of_the_wrong_type_does_not_wedge_a_worker() {
    let Some(server) = start_server(false) else {
        return;
    };
    let worker = server.worker();
    let ex = server.executor();
    let mut con = server.con();
    // Someone with write access turns the dead-letter stream into a string.
    let _: () = redis::cmd("SET")
        .arg("{cf}:dead")
        .arg("x")
        .query(&mut con)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg("{cf}:queue")
        .arg("*")
        .arg("junk")
        .arg("1")
        .query(&mut con)
        .unwrap();
    // The junk entry cannot be dead-lettered; the worker logs it and answers what follows.
    for i in 0..20 {
        assert_eq!(ex.submit(double, i).unwrap().result().unwrap(), 2 * i);
    }
    worker.stop();
    worker.join();
}

#[test]
fn tasks_submitted_while_redis_loads_its_aof_run_once_each() {
    // Issue 18, point 5: while Redis replayed its AOF it answered LOADING, and every task
    // submitted meanwhile failed at once with "Redis refused the task"; a worker's answer
    // refused the same way was dropped.
    let Some(mut server) = start_server(true) else {
        return;
    };
    let _workers: Vec<_> = (0..2)
        .map(|_| WorkerProcess::start(&server.url, Duration::from_secs(30), 4))
        .collect();
    let ex = server.executor();
    assert_eq!(ex.submit(double, 1).unwrap().result(), Ok(2));
    // Padding that the restart must reload: about a second of LOADING here.
    let _: () = redis::cmd("EVAL")
        .arg("for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'pad:' .. i, ARGV[2]) end")
        .arg(0)
        .arg(800_000)
        .arg("x".repeat(64))
        .query(&mut server.con())
        .unwrap();
    let log = std::env::temp_dir().join(format!("cf-loading-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let path = log.to_string_lossy().into_owned();
    // Eight tasks that finish while Redis loads: their workers' answers meet LOADING.
    let mut futs: Vec<_> = (0..8u64)
        .map(|i| {
            ex.submit(mark, (path.clone(), i.to_string(), 200 + 150 * i))
                .unwrap()
        })
        .collect();
    // Each writes its line as it starts.
    eventually("the eight are running", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 8)
    });
    server.kill();
    server.launch_loading();
    let (mut saw_loading, mut after) = (false, 0);
    let end = Instant::now() + Duration::from_secs(60);
    // Submit all through the reload and a little after it.
    while after < 50 && Instant::now() < end {
        let i = futs.len() as u64;
        futs.push(ex.submit(mark, (path.clone(), i.to_string(), 0)).unwrap());
        match redis::cmd("PING").query::<String>(&mut server.con()) {
            Err(e) if e.code() == Some("LOADING") => saw_loading = true,
            Ok(_) => after += 1,
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        saw_loading,
        "the restart was too quick to see LOADING: the test proves nothing"
    );
    let n = futs.len();
    for (i, f) in futs.into_iter().enumerate() {
        let got = f.result_timeout(Duration::from_secs(60));
        assert!(
            matches!(&got, Ok(tag) if *tag == i.to_string()),
            "task {i}: {got:?}"
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let mut runs: HashMap<&str, usize> = HashMap::new();
    for line in text.lines() {
        *runs.entry(line).or_default() += 1;
    }
    assert_eq!(runs.len(), n, "every task ran");
    let twice: Vec<_> = runs.iter().filter(|&(_, &r)| r > 1).collect();
    assert!(twice.is_empty(), "tasks that ran more than once: {twice:?}");
}

#[test]
fn bad_urls_say_which_part_is_wrong_and_show_a_good_one() {
    // Issue 18, point 4: all four read "invalid Redis URL: InvalidClientConfig".
    use concurrent_futures::redis::SetupError;
    let cases = [
        ("localhost:6379", "write `redis://localhost:6379`"),
        ("http://localhost:6379", "the scheme `http` is not Redis's"),
        (
            "redis://localhost:6379/abc",
            "the database `abc` is not a number",
        ),
        ("redis:/localhost", "`redis://localhost`"),
        ("redis://localhost:99999/", "the port `99999`"),
    ];
    for (url, says) in cases {
        let err = RedisExecutor::builder(url, tasks()).build().unwrap_err();
        assert!(matches!(err, SetupError::Url(_)), "{url}: {err:?}");
        let text = err.to_string();
        assert!(text.contains(says), "{url}: {text}");
        assert!(
            text.contains("redis://[user:password@]host"),
            "{url}: {text}"
        );
    }
    // A password is never repeated back.
    let err = RedisExecutor::builder("user:s3cret@localhost", tasks())
        .build()
        .unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[test]
fn connection_errors_name_the_address_and_how_long_they_waited() {
    // Issue 18, point 4: a refused connection did not name the address; a server that never
    // answers failed after 10.3 s with "Resource temporarily unavailable (os error 11)".
    use concurrent_futures::redis::{SETUP_TIMEOUT, SetupError};
    use std::error::Error as _;
    let port = redis_server::free_port();
    let err = RedisExecutor::builder(&format!("redis://127.0.0.1:{port}/"), tasks())
        .build()
        .unwrap_err();
    let SetupError::Connect {
        address, reason, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(address, &format!("127.0.0.1:{port}"));
    assert!(reason.contains("connection refused"), "{reason}");
    assert!(err.source().is_some(), "the client's error is the source");

    // A listener that accepts and never answers: a frozen server, or not Redis at all.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(1).collect();
        std::thread::sleep(SETUP_TIMEOUT + Duration::from_secs(5));
        drop(held);
    });
    // A second rather than the default SETUP_TIMEOUT (10 s): what is checked is the message.
    let err = RedisWorker::builder(&format!("redis://127.0.0.1:{port}/"), tasks())
        .setup_timeout(Duration::from_secs(1))
        .spawn()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("timed out after 1"), "{text}");
    drop(holder);
}

#[test]
fn a_task_that_kills_its_thread_mode_worker_fails_alone() {
    // Issue 18, point 3: the tasks a worker held died together, were taken over together,
    // and died together again: 1 to 3 innocent tasks of 30 also failed with WorkerLost.
    let Some(server) = start_server(false) else {
        return;
    };
    // One worker of 4 task slots, restarted whenever it dies, until the test is over (the
    // supervisor stops and kills it when dropped, a failed assertion included).
    struct Supervisor {
        over: Arc<std::sync::atomic::AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }
    impl Drop for Supervisor {
        fn drop(&mut self) {
            self.over.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
    let url = server.url.clone();
    let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let restarts = Arc::new(AtomicUsize::new(0));
    let supervisor = Supervisor {
        over: over.clone(),
        thread: Some({
            let (over, restarts) = (over.clone(), restarts.clone());
            std::thread::spawn(move || {
                while !over.load(Ordering::SeqCst) {
                    let mut worker = WorkerProcess::start(&url, Duration::from_millis(600), 4);
                    while !over.load(Ordering::SeqCst) && worker.0.try_wait().unwrap().is_none() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    restarts.fetch_add(1, Ordering::SeqCst);
                }
            })
        }),
    };
    let ex = server.executor();
    let poison_at = 7;
    let futs: Vec<_> = (0..30u64)
        .map(|i| {
            if i == poison_at {
                Err(ex.submit(exit_now, 9).unwrap())
            } else {
                Ok(ex.submit(sleep_ms, 200 + i).unwrap())
            }
        })
        .collect();
    for (i, f) in futs.into_iter().enumerate() {
        match f {
            Ok(f) => {
                let got = f.result_timeout(Duration::from_secs(60));
                assert!(
                    matches!(got, Ok(ms) if ms == 200 + i as u64),
                    "innocent task {i}: {got:?}"
                );
            }
            Err(f) => {
                let got = f.result_timeout(Duration::from_secs(60));
                assert!(
                    matches!(
                        got,
                        Err(concurrent_futures::ResultTimeoutError::Failed(
                            TaskError::WorkerLost(_)
                        ))
                    ),
                    "the poison task: {got:?}"
                );
            }
        }
    }
    drop(supervisor);
    assert!(
        restarts.load(Ordering::SeqCst) >= 3,
        "the poison killed its worker each time"
    );
}

#[test]
fn when_redis_is_gone_futures_fail_after_the_outage_limit_and_drop_returns() {
    // Issue 18, point 2: with Redis killed after build(), result() blocked for ever,
    // nothing was logged, and dropping the executor hung.
    let Some(mut server) = start_server(false) else {
        return;
    };
    // In a process of its own: a worker in this process would wait for ever to give its
    // answer to a Redis that is gone (the worker side of this is not bounded yet).
    let worker = WorkerProcess::start(&server.url, Duration::from_secs(5), 2);
    let ex = RedisExecutor::builder(&server.url, tasks())
        .outage_limit(Duration::from_secs(2))
        .build()
        .unwrap();
    assert_eq!(ex.submit(double, 4).unwrap().result(), Ok(8));
    let running = ex.submit(sleep_ms, 3_000).unwrap();
    std::thread::sleep(Duration::from_millis(300)); // taken by the worker
    server.kill();
    drop(worker);
    let after = ex.submit(double, 5).unwrap(); // queued locally while Redis is gone
    let address = server
        .url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    for f in [running, after] {
        match f.result_timeout(Duration::from_secs(60)) {
            Err(concurrent_futures::ResultTimeoutError::Failed(TaskError::Unreachable(why))) => {
                assert!(why.contains(&address), "{why}");
                assert!(why.contains("could not be reached for"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
    // Dropping the executor returns: nothing is left to wait for.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(ex);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("dropping the executor hung");
}

/// The lost-data cases: a task running when Redis lost its data gets its answer; one only
/// queued is gone with the data and fails as lost, within `LOST_AFTER` (10 s) of the loss.
fn after_a_data_loss(lose: impl FnOnce(&mut RedisServer)) {
    let Some(mut server) = start_server(false) else {
        return;
    };
    let _worker = WorkerProcess::start(&server.url, Duration::from_secs(5), 1);
    let ex = server.executor();
    assert_eq!(ex.submit(double, 2).unwrap().result(), Ok(4));
    let running = ex.submit(sleep_ms, 1_500).unwrap();
    let queued = ex.submit(double, 3).unwrap(); // behind it: the worker has one slot
    eventually("the worker to start the task", || {
        ex.info().is_ok_and(|i| i.running.len() == 1)
    });
    // In Redis before the loss (a task the writer had not sent yet would go to the new,
    // empty Redis and run: not a loss).
    ex.flush().unwrap();
    lose(&mut server);
    // The worker answers a task Redis no longer has, rather than dropping the answer.
    assert_eq!(
        running.result_timeout(Duration::from_secs(60)).ok(),
        Some(1_500)
    );
    match queued.result_timeout(Duration::from_secs(60)) {
        Err(concurrent_futures::ResultTimeoutError::Failed(TaskError::Lost(why))) => {
            assert!(why.contains("no longer has it"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    // The executor goes on with the new, empty Redis.
    assert_eq!(
        ex.submit(double, 5)
            .unwrap()
            .result_timeout(Duration::from_secs(60))
            .ok(),
        Some(10)
    );
    assert_eq!(ex.pending(), 0);
}

#[test]
fn after_a_restart_without_data_running_tasks_answer_and_queued_ones_fail_as_lost() {
    // Issue 18, point 1: after a restart without data, every future submitted before it was
    // still waiting after 60 s (the workers' answers were dropped), and drop hung.
    after_a_data_loss(|server| {
        server.kill();
        server.launch();
    });
}

#[test]
fn after_a_flushall_running_tasks_answer_and_queued_ones_fail_as_lost() {
    // Issue 18, point 1, with the server up: `FLUSHALL` (or a failover to an empty
    // replica) removes the queue, the workers' holds and the reply stream at once.
    after_a_data_loss(|server| {
        let () = redis::cmd("FLUSHALL").query(&mut server.con()).unwrap();
    });
}

/// Runs `f` on a thread of its own and returns its value, failing the test if it takes
/// longer than `bound` (a call that waited on a cut-off Redis would still be waiting: the
/// partition lasts until the test heals it).
fn bounded<T: Send + 'static>(
    what: &str,
    bound: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(bound)
        .unwrap_or_else(|_| panic!("{what} did not return within {bound:?}"))
}

#[test]
fn during_a_partition_submit_cancel_and_info_return_and_a_heal_loses_nothing() {
    // Issue 18, point 2: during a partition `submit` blocked 30.6-32 s (an idle client sent
    // its task on the control connection and waited for the answer); `cancel()` and
    // `info()` shared that connection.
    let Some(server) = start_server(false) else {
        return;
    };
    let proxy = redis_server::Proxy::start(server.port);
    let _worker = WorkerProcess::start(&server.url, Duration::from_secs(5), 2);
    let ex = RedisExecutor::builder(&proxy.url, tasks())
        .max_unsent(20)
        .command_timeout(Duration::from_millis(500))
        .setup_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!(ex.submit(double, 1).unwrap().result(), Ok(2));
    let ex = Arc::new(ex);
    proxy.cut();

    let e = ex.clone();
    let runs = temp_file("inline");
    let path = runs.display().to_string();
    let (first, futs, full) = bounded("submit", Duration::from_secs(60), move || {
        // The first is written inline on the control connection, and its reply never
        // comes: the proxy holds the bytes until it heals, then Redis queues it, while the
        // writer has sent it again meanwhile. Sent again by id, it is queued once.
        let first = e.submit(mark, (path, "inline".into(), 0)).unwrap();
        let futs: Vec<_> = (1..20u64).map(|i| e.submit(double, i).unwrap()).collect();
        (first, futs, e.submit(double, 99).unwrap_err())
    });
    assert!(proxy.is_cut());
    // The local queue is bounded, and the refused task comes back.
    let msg = full.to_string();
    assert!(msg.contains("max_unsent 20"), "{msg}");
    assert!(msg.contains(&proxy.address), "{msg}");
    assert!(matches!(full, SubmitError::Full { .. }), "{full:?}");
    let (f, arg) = full.into_inner();
    assert_eq!(f(arg), 198);

    let (futs, cancelled) = bounded("cancel", Duration::from_secs(60), move || {
        let cancelled = futs[18].cancel();
        (futs, cancelled)
    });
    let e = ex.clone();
    let info = bounded("info", Duration::from_secs(60), move || e.info());
    assert!(proxy.is_cut());
    match info {
        Err(concurrent_futures::redis::SetupError::Connect {
            address, reason, ..
        }) => {
            assert_eq!(address, proxy.address);
            assert!(reason.contains("timed out after"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    proxy.heal();
    assert_eq!(
        first
            .result_timeout(Duration::from_secs(60))
            .ok()
            .as_deref(),
        Some("inline")
    );
    for (i, f) in futs.into_iter().enumerate() {
        let i = i + 1;
        let got = f.result_timeout(Duration::from_secs(60));
        if i == 19 && cancelled {
            assert!(
                matches!(
                    &got,
                    Err(concurrent_futures::ResultTimeoutError::Failed(
                        TaskError::Cancelled
                    ))
                ),
                "{got:?}"
            );
        } else {
            assert_eq!(got.ok(), Some(2 * i as u64), "task {i}");
        }
    }
    assert_eq!(ex.pending(), 0);
    // Queued once: a second copy would have run by now, on the idle worker.
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(lines(&runs), vec!["inline".to_owned()]);
    let _ = std::fs::remove_file(runs);
}

#[test]
fn a_partition_past_the_outage_limit_fails_the_futures_naming_the_address() {
    let Some(server) = start_server(false) else {
        return;
    };
    let proxy = redis_server::Proxy::start(server.port);
    let ex = RedisExecutor::builder(&proxy.url, tasks())
        .outage_limit(Duration::from_secs(1))
        .build()
        .unwrap();
    proxy.cut();
    let t = Instant::now();
    let fut = ex.submit(double, 4).unwrap(); // no worker: it would wait for one
    match fut.result_timeout(Duration::from_secs(120)) {
        Err(concurrent_futures::ResultTimeoutError::Failed(TaskError::Unreachable(why))) => {
            assert!(why.contains(&proxy.address), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let failed = t.elapsed();
    bounded(
        "dropping the executor",
        Duration::from_secs(120),
        move || drop(ex),
    );
    eprintln!(
        "a partition: the future failed {failed:.1?} after the cut (outage_limit 1 s), the \
         executor was dropped {:.1?} after the cut",
        t.elapsed()
    );
}

#[test]
fn a_worker_stopped_while_redis_is_gone_ends_after_its_outage_limit() {
    // Issue 18, point 2, the worker's side: a worker whose answer Redis could not take
    // retried for ever, so stopping or dropping it hung.
    let Some(mut server) = start_server(false) else {
        return;
    };
    let worker = RedisWorker::builder(&server.url, tasks())
        .max_workers(2)
        .outage_limit(Duration::from_secs(1))
        .spawn()
        .unwrap();
    let ex = RedisExecutor::builder(&server.url, tasks())
        .outage_limit(Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!(ex.submit(double, 1).unwrap().result(), Ok(2));
    let _running = ex.submit(sleep_ms, 500).unwrap();
    std::thread::sleep(Duration::from_millis(200)); // taken
    server.kill(); // its answer will find no Redis
    std::thread::sleep(Duration::from_millis(600)); // answered, retrying
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(worker);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("dropping the worker hung");
    drop(ex); // bounded by its own outage_limit
}

#[test]
fn a_frozen_redis_fails_the_futures_after_the_outage_limit() {
    // Issue 18, point 2, a frozen server (SIGSTOP): it accepts connections and answers
    // nothing, so the client notices it only through its read timeouts, then counts the
    // outage from the last answer.
    let Some(server) = start_server(false) else {
        return;
    };
    let ex = RedisExecutor::builder(&server.url, tasks())
        .outage_limit(Duration::from_secs(2))
        .build()
        .unwrap();
    server.signal("STOP");
    let t = Instant::now();
    let fut = ex.submit(double, 1).unwrap(); // no worker: it would wait for one
    let submitted = t.elapsed();
    let got = fut.result_timeout(Duration::from_secs(90));
    let took = t.elapsed();
    server.signal("CONT");
    assert!(
        matches!(
            &got,
            Err(concurrent_futures::ResultTimeoutError::Failed(
                TaskError::Unreachable(_)
            ))
        ),
        "{got:?}"
    );
    eprintln!(
        "a frozen Redis: submit returned after {submitted:.1?}, the future failed {took:.1?} \
         after the freeze (outage_limit 2 s)"
    );
    drop(ex);
}

// ---------------------------------------------------------------------------------------
// Durable tasks (issue 19): ids, enqueue and exit, attach and status from any process,
// idempotent submits.

/// Not a test: a producer process. `CF_TEST_PRODUCER` is the URL; `CF_TEST_MODE` says what
/// to do; what it learns goes to the file `CF_TEST_OUT`, one line each.
#[test]
#[ignore = "a producer process of the Redis tests; they run it"]
fn producer_process() {
    let Ok(url) = std::env::var("CF_TEST_PRODUCER") else {
        return;
    };
    let out = std::env::var("CF_TEST_OUT").unwrap();
    let mut lines = Vec::new();
    let ex = RedisExecutor::builder(&url, tasks()).build().unwrap();
    match std::env::var("CF_TEST_MODE").unwrap().as_str() {
        // Enqueue 100 tasks, print their ids, and leave without waiting for any result.
        "enqueue" => {
            for i in 0..100u64 {
                let fut = ex.submit(double, i).unwrap();
                lines.push(format!("{i} {}", fut.task_id().unwrap()));
            }
        }
        // Submit `mark` under a chosen id and print its result.
        "same-id" => {
            let id = std::env::var("CF_TEST_ID").unwrap().parse().unwrap();
            let runs = std::env::var("CF_TEST_RUNS").unwrap();
            let fut = ex
                .submit_with(
                    mark,
                    (runs, std::process::id().to_string(), 300),
                    TaskOptions::new().id(id),
                )
                .unwrap();
            lines.push(fut.result().unwrap());
        }
        other => panic!("unknown mode {other}"),
    }
    std::fs::write(&out, lines.join("\n")).unwrap();
    // Dropping the executor sends what is left and returns: it never waits for results.
}

fn producer(url: &str, mode: &str, envs: &[(&str, &str)]) -> (Child, PathBuf) {
    let out = temp_file("producer");
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "producer_process", "--ignored", "--nocapture"])
        .env("CF_TEST_PRODUCER", url)
        .env("CF_TEST_MODE", mode)
        .env("CF_TEST_OUT", &out)
        .stdout(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    (cmd.spawn().unwrap(), out)
}

/// Waits for a child process to exit, failing the test after 60 s.
fn exits(child: &mut Child) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the process did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_producer_enqueues_and_exits_and_another_process_attaches_by_id() {
    // Issue 19: a producer that submitted and returned from main hung in Drop for ever (no
    // worker was running), and `mem::forget` lost 41-62 of 100 tasks.
    let Some(server) = start_server(false) else {
        return;
    };
    let (mut child, out) = producer(&server.url, "enqueue", &[]);
    assert!(exits(&mut child).success(), "the producer failed");
    let ids: Vec<(u64, concurrent_futures::redis::TaskId)> = lines(&out)
        .iter()
        .map(|l| {
            let (i, id) = l.split_once(' ').unwrap();
            (i.parse().unwrap(), id.parse().unwrap())
        })
        .collect();
    assert_eq!(ids.len(), 100);
    // Every task is in Redis, queued: no worker ran yet.
    let ex = server.executor();
    for (_, id) in &ids {
        assert_eq!(
            ex.status(id).unwrap(),
            concurrent_futures::redis::TaskStatus::Queued
        );
    }
    // Another process attaches, before and after a worker runs them.
    let early: Vec<_> = ids[..50]
        .iter()
        .map(|(_, id)| ex.attach::<u64>(id).unwrap())
        .collect();
    let _worker = WorkerProcess::start(&server.url, Duration::from_secs(5), 4);
    let mut got: Vec<u64> = as_completed(early).map(|f| f.result().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..50).map(|i| i * 2).collect::<Vec<_>>());
    eventually("the other 50 tasks to run", || {
        ids[50..]
            .iter()
            .all(|(_, id)| ex.status(id).is_ok_and(|s| s.is_finished()))
    });
    // Finished tasks: attach completes at once from the kept record, `.await` included.
    for (i, id) in &ids[50..] {
        let fut = ex.attach::<u64>(id).unwrap();
        assert!(fut.done());
        assert_eq!(futures::executor::block_on(fut), Ok(i * 2));
    }
    // Start marks may reach Redis after the answers (other connections): the keeper
    // prunes them, so nothing is left of the 100 tasks in the running hashes.
    let mut con = server.con();
    eventually("the running hashes to be pruned", || {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("{cf}:running:*")
            .query(&mut con)
            .unwrap();
        keys.iter()
            .all(|k| redis::cmd("HLEN").arg(k).query::<u64>(&mut con).unwrap() == 0)
    });
    let unknown: concurrent_futures::redis::TaskId = "never-submitted".parse().unwrap();
    assert!(matches!(
        ex.attach::<u64>(&unknown),
        Err(concurrent_futures::redis::LookupError::Unknown(_))
    ));
    assert_eq!(
        ex.status(&unknown).unwrap(),
        concurrent_futures::redis::TaskStatus::Unknown
    );
    let _ = std::fs::remove_file(out);
}

#[test]
fn idempotent_submits_from_two_processes_at_once_run_once() {
    let Some(server) = start_server(false) else {
        return;
    };
    let _worker = WorkerProcess::start(&server.url, Duration::from_secs(5), 4);
    let runs = temp_file("runs");
    let runs_path = runs.display().to_string();
    let (mut a, out_a) = producer(
        &server.url,
        "same-id",
        &[
            ("CF_TEST_ID", "charge:order-42"),
            ("CF_TEST_RUNS", &runs_path),
        ],
    );
    let (mut b, out_b) = producer(
        &server.url,
        "same-id",
        &[
            ("CF_TEST_ID", "charge:order-42"),
            ("CF_TEST_RUNS", &runs_path),
        ],
    );
    assert!(exits(&mut a).success());
    assert!(exits(&mut b).success());
    assert_eq!(lines(&runs).len(), 1, "the task ran {:?}", lines(&runs));
    assert_eq!(lines(&out_a), lines(&out_b));
    // A third submit while the record is kept runs nothing either, in this process, and
    // two futures of one client for one id both complete.
    let ex = server.executor();
    let id: concurrent_futures::redis::TaskId = "charge:order-42".parse().unwrap();
    let opts = TaskOptions::new().id(id.clone());
    let again = ex
        .submit_with(mark, (runs_path.clone(), "third".into(), 0), opts.clone())
        .unwrap();
    let also = ex.attach::<String>(&id).unwrap();
    assert_eq!(again.task_id(), Some(id));
    assert_eq!(again.result().unwrap(), lines(&out_a)[0]);
    assert_eq!(also.result().unwrap(), lines(&out_a)[0]);
    assert_eq!(lines(&runs).len(), 1);
    for f in [runs, out_a, out_b] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn status_goes_through_every_state() {
    use concurrent_futures::redis::TaskStatus;
    let Some(server) = start_server(false) else {
        return;
    };
    let ex = server.executor();
    // Queued, then cancelled.
    let queued = ex.submit(double, 1).unwrap();
    let qid = queued.task_id().unwrap();
    ex.flush().unwrap();
    assert_eq!(ex.status(&qid).unwrap(), TaskStatus::Queued);
    assert!(queued.cancel());
    assert_eq!(ex.status(&qid).unwrap(), TaskStatus::Cancelled);
    // Running on a worker that is then SIGKILLed: another takes it over, delivery 2.
    let mut first = WorkerProcess::start(&server.url, Duration::from_secs(1), 1);
    let slow = ex.submit(sleep_ms, 3_000).unwrap();
    let sid = slow.task_id().unwrap();
    let mut holder = String::new();
    eventually("the task to run", || match ex.status(&sid).unwrap() {
        TaskStatus::Running {
            worker,
            deliveries,
            started,
            ..
        } => {
            assert_eq!(deliveries, 1);
            holder = worker;
            started.is_some()
        }
        _ => false,
    });
    assert!(holder.contains(&format!("-{}-", first.pid())), "{holder}");
    first.kill();
    let _second = WorkerProcess::start(&server.url, Duration::from_secs(1), 1);
    eventually("another worker to take it over", || {
        matches!(
            ex.status(&sid).unwrap(),
            TaskStatus::Running { deliveries: 2, .. }
        )
    });
    assert_eq!(slow.result(), Ok(3_000));
    assert!(matches!(ex.status(&sid).unwrap(), TaskStatus::Done { .. }));
    // Failed, with the error its future has; and listed among the recent failures.
    let failed = ex.submit(boom, 7).unwrap();
    let fid = failed.task_id().unwrap();
    assert!(failed.result().is_err());
    let listed = ex.info().unwrap().failed;
    let entry = listed
        .iter()
        .find(|t| t.id == fid.as_str())
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert!(
        matches!(&entry.error, TaskError::Panicked(p) if p.contains("boom 7")),
        "{entry:?}"
    );
    match ex.status(&fid).unwrap() {
        TaskStatus::Failed {
            error: TaskError::Panicked(p),
            ..
        } => assert!(p.contains("boom 7"), "{p}"),
        other => panic!("{other:?}"),
    }
    // Dead-lettered: a task the workers do not know.
    let client_only = RedisExecutor::builder(&server.url, tasks().add("newer/v1", newer))
        .build()
        .unwrap();
    let dead = client_only.submit(newer, 1).unwrap();
    let did = dead.task_id().unwrap();
    assert!(matches!(dead.result(), Err(TaskError::Rejected(_))));
    assert!(matches!(
        ex.status(&did).unwrap(),
        TaskStatus::DeadLettered {
            error: TaskError::Rejected(_),
            ..
        }
    ));
}

#[test]
fn running_turns_true_when_a_worker_starts_the_task_in_every_process_that_follows_it() {
    use concurrent_futures::redis::TaskOptions;
    let Some(server) = start_server(false) else {
        return;
    };
    let ex = server.executor();
    let gate = temp_file("gate");
    let fut = ex
        .submit(wait_for_file, gate.display().to_string())
        .unwrap();
    let id = fut.task_id().unwrap();
    ex.flush().unwrap();
    // Queued, no worker: nobody reads it as running.
    let watcher = server.executor();
    let early = watcher.attach::<u64>(&id).unwrap();
    assert!(!fut.running() && !early.running());
    assert!(!fut.done() && !early.done());

    let _worker = server.worker();
    eventually("the submitter's future to read as running", || {
        fut.running()
    });
    eventually("the attached future to read as running", || early.running());
    // Attached, or submitted again under its id, while it runs: running at once.
    let late = server.executor().attach::<u64>(&id).unwrap();
    assert!(late.running(), "attach found it held by a worker");
    let again_ex = server.executor();
    let again = again_ex
        .submit_with(
            wait_for_file,
            gate.display().to_string(),
            TaskOptions::new().id(id.clone()),
        )
        .unwrap();
    again_ex.flush().unwrap();
    eventually("the repeated submit to read as running", || again.running());
    // A running task is not cancelled, and the futures finish as usual.
    assert!(!fut.cancel() && !early.cancel());
    std::fs::write(&gate, "done").unwrap();
    for f in [fut, early, late, again] {
        f.wait();
        assert!(!f.running() && f.done());
        assert_eq!(f.result(), Ok(4));
    }
    let _ = std::fs::remove_file(&gate);
}

#[test]
fn a_delayed_task_waits_in_redis_never_runs_early_and_can_be_cancelled_by_id() {
    use concurrent_futures::redis::TaskStatus;
    use std::time::{SystemTime, UNIX_EPOCH};
    let Some(server) = start_server(false) else {
        return;
    };
    let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let delay = Duration::from_millis(1_500);
    // Submitted by a client that then leaves: the task waits in Redis, not in the client.
    let (id, doomed, due) = {
        let producer = server.executor();
        let due = SystemTime::now() + delay;
        let fut = producer
            .submit_with(started_at, (), TaskOptions::new().at(due))
            .unwrap();
        let doomed = producer
            .submit_with(started_at, (), TaskOptions::new().delay(delay))
            .unwrap();
        (fut.task_id().unwrap(), doomed.task_id().unwrap(), due)
    };
    let ex = server.executor();
    match ex.status(&id).unwrap() {
        TaskStatus::Scheduled { at, .. } => assert_eq!(ms(at), ms(due)),
        other => panic!("{other:?}"),
    }
    // Cancelled by id from another client: it never runs.
    assert!(ex.cancel(&doomed).unwrap());
    assert_eq!(ex.status(&doomed).unwrap(), TaskStatus::Cancelled);
    assert!(!ex.cancel(&doomed).unwrap(), "cancelled once");
    // One worker, started before the task is due.
    let _worker = WorkerProcess::start(&server.url, Duration::from_secs(5), 2);
    let fut = ex.attach::<u64>(&id).unwrap();
    let started = fut.result_timeout(Duration::from_secs(60)).unwrap();
    assert!(
        started >= ms(due),
        "ran {} ms before it was due",
        ms(due) - started
    );
    eprintln!(
        "a task due at +{delay:?} started {} ms after it was due",
        started - ms(due)
    );
    assert!(matches!(ex.status(&id).unwrap(), TaskStatus::Done { .. }));
    assert!(matches!(
        ex.attach::<u64>(&doomed).unwrap().result(),
        Err(TaskError::Cancelled)
    ));
}

#[test]
fn a_periodic_task_fires_each_tick_once_with_three_workers_until_unscheduled() {
    use concurrent_futures::redis::Schedule;
    let Some(server) = start_server(false) else {
        return;
    };
    let _workers: Vec<_> = (0..3)
        .map(|_| WorkerProcess::start(&server.url, Duration::from_secs(5), 2))
        .collect();
    let ex = server.executor();
    let runs = temp_file("ticks");
    let path = runs.display().to_string();
    ex.schedule(
        "every-second",
        Schedule::every(Duration::from_secs(1)),
        tick,
        path.clone(),
    )
    .unwrap();
    let t = Instant::now();
    // Read back: its name, function, schedule and next tick, from any process.
    let set_at = std::time::SystemTime::now();
    let listed = server.executor().schedules().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].name, "every-second");
    assert_eq!(listed[0].task, "tick/v1");
    assert_eq!(listed[0].schedule, Schedule::every(Duration::from_secs(1)));
    assert_eq!(listed[0].schedule.to_string(), "every 1 s");
    let ahead = listed[0]
        .next
        .duration_since(set_at - Duration::from_secs(1));
    assert!(
        ahead.is_ok_and(|d| d <= Duration::from_secs(2)),
        "the next tick is within a period: {:?}",
        listed[0].next
    );
    std::thread::sleep(Duration::from_millis(6_500));
    let moved_on = ex.schedules().unwrap();
    assert!(
        moved_on[0].next > listed[0].next,
        "the ticks fired move it on"
    );
    assert!(ex.unschedule("every-second").unwrap());
    assert!(ex.schedules().unwrap().is_empty(), "removed from the list");
    let scheduled_for = t.elapsed();
    assert!(!ex.unschedule("every-second").unwrap(), "removed once");
    // The last tick's task may still be running: wait for it, then look.
    std::thread::sleep(Duration::from_millis(1_500));
    let fired = lines(&runs).len();
    // One task record per tick fired; a tick run twice would show as more runs than ticks.
    let mut con = server.con();
    let records: Vec<String> = redis::cmd("KEYS")
        .arg("{cf}:result:every-second@*")
        .query(&mut con)
        .unwrap();
    eprintln!(
        "{fired} runs and {} ticks in {scheduled_for:?}",
        records.len()
    );
    assert_eq!(fired, records.len(), "a tick ran twice");
    assert!(
        (5..=7).contains(&fired),
        "{fired} runs for about 6 s of 1 s ticks"
    );
    // Each tick's task is found by its id, and ran no earlier than its tick.
    for key in &records {
        let id: concurrent_futures::redis::TaskId =
            key.trim_start_matches("{cf}:result:").parse().unwrap();
        let tick_ms: u64 = id.as_str().rsplit('@').next().unwrap().parse().unwrap();
        let started = ex.attach::<u64>(&id).unwrap().result().unwrap();
        assert!(
            started >= tick_ms,
            "{id} ran {} ms early",
            tick_ms - started
        );
    }
    // Removed: no tick fires any more.
    std::thread::sleep(Duration::from_millis(2_000));
    assert_eq!(lines(&runs).len(), fired, "a tick fired after unschedule");
    let _ = std::fs::remove_file(runs);
}

#[test]
fn a_cron_schedule_fires_on_its_seconds_in_its_time_zone() {
    use concurrent_futures::redis::Schedule;
    let Some(server) = start_server(false) else {
        return;
    };
    let _worker = WorkerProcess::start(&server.url, Duration::from_secs(5), 2);
    let ex = server.executor();
    let runs = temp_file("cron");
    let schedule = Schedule::cron("*/2 * * * * *", "Asia/Kolkata").unwrap(); // every 2 s
    ex.schedule("cron-2s", schedule, tick, runs.display().to_string())
        .unwrap();
    let listed = ex.schedules().unwrap();
    let next_ms = listed[0]
        .next
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert_eq!(next_ms % 2_000, 0, "the next tick is on an even second");
    assert_eq!(
        listed[0].schedule.to_string(),
        r#"cron "*/2 * * * * *" in Asia/Kolkata"#
    );
    eventually("two cron ticks", || lines(&runs).len() >= 2);
    ex.unschedule("cron-2s").unwrap();
    let mut con = server.con();
    let records: Vec<String> = redis::cmd("KEYS")
        .arg("{cf}:result:cron-2s@*")
        .query(&mut con)
        .unwrap();
    assert!(!records.is_empty());
    for key in records {
        let tick_ms: u64 = key.rsplit('@').next().unwrap().parse().unwrap();
        assert_eq!(tick_ms % 2_000, 0, "{key}: not on an even second");
    }
    assert!(matches!(
        Schedule::cron("0 9 * * *", "Not/AZone"),
        Err(concurrent_futures::redis::InvalidSchedule { .. })
    ));
    let _ = std::fs::remove_file(runs);
}

#[test]
fn a_dead_letter_keeps_its_argument_and_a_retry_runs_it_once_under_its_id() {
    let Some(server) = start_server(false) else {
        return;
    };
    // A worker of an older build: it does not know `newer/v1`.
    let old = server.worker();
    let client = RedisExecutor::builder(&server.url, tasks().add("newer/v1", newer))
        .build()
        .unwrap();
    let fut = client.submit(newer, 42).unwrap();
    let id = fut.task_id().unwrap();
    assert!(matches!(fut.result(), Err(TaskError::Rejected(_))));
    let info = client.info().unwrap();
    assert_eq!(info.dead_total, 1, "{info}");
    let letter = &info.dead[0];
    let field = |k: &str| {
        letter
            .fields
            .iter()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(field("id"), Some(id.as_str()));
    assert_eq!(field("fn"), Some("newer/v1"));
    assert_eq!(field("a"), Some("42"), "the whole argument is kept");
    assert_eq!(field("cut"), None);

    // Ids that are not stream ids, and letters that do not exist, are ignored.
    assert_eq!(client.retry_dead(&["nonsense", "1-1", "+"]).unwrap(), 0);
    // A newer worker is deployed; the letter is retried from two processes at once.
    drop(old);
    let _new = RedisWorker::builder(&server.url, tasks().add("newer/v1", newer))
        .spawn()
        .unwrap();
    let other = server.executor();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| client.retry_dead(&[&letter.id]).unwrap());
        let b = s.spawn(|| other.retry_dead(&[&letter.id]).unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a + b, 1, "queued once");
    assert_eq!(client.info().unwrap().dead_total, 0, "the letter is gone");
    // It runs under its own id: found from any process, with its result.
    let again = other.attach::<u8>(&id).unwrap();
    assert_eq!(again.result(), Ok(42));
    assert!(matches!(
        other.status(&id).unwrap(),
        concurrent_futures::redis::TaskStatus::Done { .. }
    ));
    assert_eq!(
        client.retry_dead(&[&letter.id]).unwrap(),
        0,
        "and never twice"
    );
}

#[test]
fn dead_letters_are_deleted_by_id() {
    let Some(server) = start_server(false) else {
        return;
    };
    let _worker = server.worker();
    let client = RedisExecutor::builder(&server.url, tasks().add("newer/v1", newer))
        .build()
        .unwrap();
    for i in 0..3 {
        assert!(client.submit(newer, i).unwrap().result().is_err());
    }
    let info = client.info().unwrap();
    assert_eq!(info.dead_total, 3);
    let ids: Vec<&str> = info.dead.iter().take(2).map(|d| d.id.as_str()).collect();
    assert_eq!(client.delete_dead(&ids).unwrap(), 2);
    assert_eq!(client.delete_dead(&ids).unwrap(), 0, "already gone");
    assert_eq!(client.delete_dead(&["*", "0-0 1"]).unwrap(), 0);
    assert_eq!(client.info().unwrap().dead_total, 1);
}

#[test]
fn the_history_is_sampled_by_workers_and_counts_answers() {
    let Some(server) = start_server(false) else {
        return;
    };
    let ex = server.executor();
    assert!(ex.history().unwrap().is_empty(), "no worker, no samples");
    let futs: Vec<_> = (0..5).map(|i| ex.submit(double, i).unwrap()).collect();
    let failed = ex.submit(boom, 1).unwrap();
    // Five queued, nothing answered yet: the first worker's first heartbeat samples that.
    let worker = RedisWorker::builder(&server.url, tasks())
        .lease(Duration::from_secs(3))
        .spawn()
        .unwrap();
    for f in futs {
        f.result().unwrap();
    }
    assert!(failed.result().is_err());
    eventually("a sample", || !ex.history().unwrap().is_empty());
    // What the first one saw depends on when the first heartbeat came.
    let first = ex.history().unwrap()[0];
    // Samples are 10 s apart; with the history emptied, the next heartbeat (a second, with
    // a 3 s lease) samples at once, and says what was answered.
    let mut con = server.con();
    redis::cmd("DEL")
        .arg("{cf}:stats")
        .query::<()>(&mut con)
        .unwrap();
    eventually("a new sample", || !ex.history().unwrap().is_empty());
    let history = ex.history().unwrap();
    let last = history.last().unwrap();
    assert_eq!(
        (last.completed, last.failed, last.queued),
        (5, 1, 0),
        "{last:?}"
    );
    assert!(first.at <= last.at);
    drop(worker);
}

/// A file name that no task creates: a `wait_for_file` on it runs until the test writes it.
fn never(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("cf-kill-{}-{name}", std::process::id()))
        .to_string_lossy()
        .into_owned()
}

fn until_running(ex: &RedisExecutor, id: &concurrent_futures::redis::TaskId) {
    eventually("the task to run", || {
        matches!(
            ex.status(id).unwrap(),
            concurrent_futures::redis::TaskStatus::Running { .. }
        )
    });
}

#[test]
fn a_running_task_is_killed_on_request_on_threads_and_a_queued_one_cancelled() {
    use concurrent_futures::redis::TaskStatus;
    let Some(server) = start_server(false) else {
        return;
    };
    let ex = server.executor();
    // On threads: answered at once; the thread runs on until its file appears.
    let worker = RedisWorker::builder(&server.url, tasks())
        .max_workers(2)
        .spawn()
        .unwrap();
    let stuck = never("threads");
    let fut = ex.submit(wait_for_file, stuck.clone()).unwrap();
    let id = fut.task_id().unwrap();
    until_running(&ex, &id);
    assert!(ex.kill(&id).unwrap());
    assert_eq!(fut.result(), Err(TaskError::Cancelled));
    assert_eq!(ex.status(&id).unwrap(), TaskStatus::Cancelled);
    assert!(!ex.kill(&id).unwrap(), "it ended");
    assert_eq!(
        ex.submit(double, 2).unwrap().result(),
        Ok(4),
        "the worker goes on"
    );
    std::fs::write(&stuck, b"x").unwrap(); // lets the thread go

    // Queued behind a busy slot: killing it cancels it, as `cancel` would.
    let blocker = never("blocker");
    let busy: Vec<_> = (0..2)
        .map(|_| ex.submit(wait_for_file, blocker.clone()).unwrap())
        .collect();
    for b in &busy {
        until_running(&ex, &b.task_id().unwrap());
    }
    let queued = ex.submit(double, 1).unwrap();
    ex.flush().unwrap();
    assert!(ex.kill(&queued.task_id().unwrap()).unwrap());
    assert_eq!(queued.result(), Err(TaskError::Cancelled));
    std::fs::write(&blocker, b"x").unwrap();
    for b in busy {
        assert_eq!(b.result(), Ok(1));
    }
    worker.stop();
    worker.join();
    let _ = std::fs::remove_file(&stuck);
    let _ = std::fs::remove_file(&blocker);
}

#[cfg(all(unix, feature = "process"))]
#[test]
fn a_running_task_killed_on_request_takes_its_worker_process_with_it() {
    let Some(server) = start_server(false) else {
        return;
    };
    let ex = server.executor();
    concurrent_futures::init();
    let worker = RedisWorker::builder(&server.url, tasks())
        .processes(true)
        .max_workers(1)
        .spawn()
        .unwrap();
    let before = ex.submit(pid, ()).unwrap().result().unwrap();
    let stuck = never("processes");
    let fut = ex.submit(wait_for_file, stuck.clone()).unwrap();
    let id = fut.task_id().unwrap();
    until_running(&ex, &id);
    assert!(ex.kill(&id).unwrap());
    assert_eq!(fut.result(), Err(TaskError::Cancelled));
    let after = ex.submit(pid, ()).unwrap().result().unwrap();
    assert_ne!(before, after, "a new worker process");
    drop(worker);
}
