//! Feature `tracing`: a task's trace context travels with it into a worker process and
//! through Redis, where a `Propagator` continues it (as the parent on a first delivery, a
//! link on a later one).
#![cfg(all(unix, feature = "process", feature = "redis", feature = "tracing"))]

mod common;
mod redis_server;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::spans::Recorder;
use concurrent_futures::redis::{RedisExecutor, RedisWorker, Tasks};
use concurrent_futures::{ProcessPoolExecutor, Propagator, Relation};
use tracing::Span;
use tracing_subscriber::layer::SubscriberExt;

concurrent_futures::worker_test!();

fn square(x: u64) -> u64 {
    x * x
}

/// Carries the submitter's span id. Where it continues a context, it says so in an event
/// inside the span (this process's recorder sees it) and in a file named after the parent
/// process (a worker process has no recorder: its parent, the test, reads the file).
struct SpanIds;

impl Propagator for SpanIds {
    fn inject(&self, span: &Span) -> Option<String> {
        span.id().map(|id| format!("span-{}", id.into_u64()))
    }

    fn extract(&self, span: &Span, context: &str, relation: Relation) {
        tracing::info!(parent: span, "continues {context} as {relation:?}");
        if IN_TEST_PROCESS.load(std::sync::atomic::Ordering::SeqCst) {
            return; // the recorder saw the event
        }
        use std::io::Write as _;
        let log = log_of(std::os::unix::process::parent_id());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{context} {relation:?} pid={}", std::process::id());
        }
    }
}

fn log_of(pid: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cf-propagation-{pid}.log"))
}

/// Set in the test process, where the recorder sees the events; a worker process writes a
/// file instead.
static IN_TEST_PROCESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The worker processes' initializer: their propagator.
fn install() {
    concurrent_futures::set_propagator(SpanIds);
}

/// This process's subscriber and propagator, once for every test (a Redis worker's threads
/// need the global default).
fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder = Recorder::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(recorder.clone()),
        )
        .unwrap();
        IN_TEST_PROCESS.store(true, std::sync::atomic::Ordering::SeqCst);
        install();
        recorder
    })
}

/// The id of the one span named `name` whose field `key` is `value`.
fn id_of(recorder: &Recorder, name: &str, key: &str, value: &str) -> u64 {
    let found: Vec<u64> = recorder
        .with_ids(name)
        .into_iter()
        .filter(|(_, s)| s.fields.get(key).map(String::as_str) == Some(value))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(found.len(), 1, "{name} spans with {key}={value}: {found:?}");
    found[0]
}

#[test]
fn a_process_pool_task_continues_its_submitters_trace_in_the_worker_process() {
    concurrent_futures::init();
    let recorder = recorder();
    let log = log_of(std::process::id());
    let _ = std::fs::remove_file(&log);
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer(install)
        .build()
        .unwrap();
    let request = tracing::info_span!("request");
    let fut = request.in_scope(|| pool.submit(square, 9).unwrap());
    assert_eq!(fut.result(), Ok(81));
    let task = id_of(recorder, "task", "executor", "process");
    let seen = std::fs::read_to_string(&log).unwrap_or_default();
    let worker_pid = seen.lines().find_map(|l| {
        l.strip_prefix(&format!("span-{task} Parent pid="))
            .and_then(|p| p.parse::<u32>().ok())
    });
    assert!(
        worker_pid.is_some_and(|p| p != std::process::id()),
        "the worker process continued span-{task}: {seen:?}"
    );
    let _ = std::fs::remove_file(&log);
}

fn double(x: u64) -> u64 {
    x * 2
}

#[test]
fn a_redis_task_continues_its_submitters_trace_and_a_redelivery_follows_from_it() {
    if !redis_server::available() {
        return;
    }
    let recorder = recorder();
    let server = redis_server::RedisServer::start("propagation", false);
    let tasks = || Tasks::new().add("double/v1", double);
    let ex = RedisExecutor::builder(&server.url, tasks())
        .build()
        .unwrap();

    // Delivered to a consumer that never answers, then taken over: delivery 2.
    let orphan = ex.submit(double, 1).unwrap();
    let orphan_id = orphan.task_id().unwrap().to_string();
    ex.flush().unwrap();
    let mut con = server.con();
    let taken: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("workers")
        .arg("ghost")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg("{cf}:queue")
        .arg(">")
        .query(&mut con)
        .unwrap();
    assert!(!matches!(taken, redis::Value::Nil), "the ghost took it");

    let worker = RedisWorker::builder(&server.url, tasks())
        .lease(Duration::from_secs(1))
        .spawn()
        .unwrap();
    let fresh = ex.submit(double, 21).unwrap();
    let fresh_id = fresh.task_id().unwrap().to_string();
    assert_eq!(fresh.result(), Ok(42));
    assert_eq!(orphan.result(), Ok(2));
    drop(ex);
    worker.stop();

    for (id, relation) in [(&fresh_id, "Parent"), (&orphan_id, "FollowsFrom")] {
        let submitted = id_of(recorder, "task", "task", id);
        let delivery = recorder
            .with_ids("redis_task")
            .into_iter()
            .map(|(_, s)| s)
            .find(|s| s.fields.get("task") == Some(id))
            .unwrap_or_else(|| panic!("no delivery of {id}"));
        let expected = format!("continues span-{submitted} as {relation}");
        assert!(
            delivery.events.contains(&expected),
            "{expected} in {:?}",
            delivery.events
        );
    }
    // The submitter's span says how it ended.
    let t = Instant::now();
    while recorder
        .with_ids("task")
        .into_iter()
        .find(|(_, s)| s.fields.get("task") == Some(&fresh_id))
        .is_none_or(|(_, s)| s.fields.get("outcome").map(String::as_str) != Some("ok"))
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no outcome on the submitter's span"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
