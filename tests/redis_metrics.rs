//! Feature `metrics` on Redis: a worker counts the tasks it starts, answers (by outcome),
//! retries and dead-letters, and times their queue wait and run, under the local pools'
//! names with `executor="redis"`.
#![cfg(all(feature = "redis", feature = "metrics"))]

mod common;
mod redis_server;

use std::time::Duration;

use common::recorder::Recorded;
use concurrent_futures::TaskError;
use concurrent_futures::redis::{RedisExecutor, RedisWorker, TaskOptions, Tasks};

fn double(x: u64) -> u64 {
    x * 2
}

/// Known to the client, not to the worker: the worker rejects it into the dead letters.
fn unknown_to_the_worker(x: u64) -> u64 {
    x
}

fn boom(_: u64) -> u64 {
    panic!("boom")
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn a_worker_counts_and_times_what_it_runs() {
    if !redis_server::available() {
        return;
    }
    let recorded = Recorded::install();
    let server = redis_server::RedisServer::start("metrics", false);
    let both = || {
        Tasks::new()
            .add("double/v1", double)
            .add("boom/v1", boom)
            .add("sleep/v1", sleep_ms)
    };
    let worker = RedisWorker::builder(&server.url, both())
        .max_workers(2)
        .spawn()
        .unwrap();
    let ex = RedisExecutor::builder(&server.url, both().add("unknown/v1", unknown_to_the_worker))
        .build()
        .unwrap();
    for i in 0..5u64 {
        assert_eq!(ex.submit(double, i).unwrap().result(), Ok(2 * i));
    }
    let once_more = TaskOptions::new().retries(1, Duration::from_millis(10));
    assert!(matches!(
        ex.submit_with(boom, 1, once_more).unwrap().result(),
        Err(TaskError::Panicked(_))
    ));
    assert!(
        ex.submit(unknown_to_the_worker, 1)
            .unwrap()
            .result()
            .is_err()
    );
    drop(ex);
    worker.stop();

    let get = |key: &str| recorded.get(key);
    assert_eq!(
        get("concurrent_futures_tasks_completed_total{executor=redis,outcome=ok}"),
        5.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_completed_total{executor=redis,outcome=panicked}"),
        1.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_completed_total{executor=redis,outcome=rejected}"),
        1.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_retried_total{executor=redis}"),
        1.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_dead_lettered_total{executor=redis}"),
        1.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_started_total{executor=redis}"),
        7.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_in_flight{executor=redis}"),
        0.0,
        "every start was answered"
    );
    assert_eq!(
        get("concurrent_futures_task_queue_wait_seconds{executor=redis}"),
        7.0
    );
    assert_eq!(
        get("concurrent_futures_task_run_seconds{executor=redis}"),
        7.0
    );

    // The autoscaling signal: a busy worker's heartbeat reports what waits, and for how long.
    let worker = RedisWorker::builder(&server.url, both())
        .max_workers(1)
        .lease(Duration::from_millis(300))
        .spawn()
        .unwrap();
    let ex = RedisExecutor::builder(&server.url, both()).build().unwrap();
    let busy = ex.submit(sleep_ms, 1_500).unwrap();
    common::eventually(|| busy.running());
    let queued: Vec<_> = (0..3u64).map(|i| ex.submit(double, i).unwrap()).collect();
    // Three wait in Redis, less what the worker has already taken ahead of its turn.
    common::eventually(|| {
        get("concurrent_futures_queue_depth{executor=redis}") >= 1.0
            && get("concurrent_futures_queue_oldest_age_seconds{executor=redis}") > 0.0
    });
    assert_eq!(busy.result(), Ok(1_500));
    for (i, f) in queued.into_iter().enumerate() {
        assert_eq!(f.result(), Ok(2 * i as u64));
    }
    common::eventually(|| {
        get("concurrent_futures_queue_depth{executor=redis}") == 0.0
            && get("concurrent_futures_queue_oldest_age_seconds{executor=redis}") == 0.0
    });
    drop(ex);
    worker.stop();
}
