//! Feature `tracing` on Redis: a worker opens a `redis_task` span per delivery, with the
//! task's id, function, delivery and worker, and the pool's `task` span that runs it is its
//! child, so a task id leads to its run.
#![cfg(all(feature = "redis", feature = "tracing"))]

mod common;
mod redis_server;

use common::spans::Recorder;
use concurrent_futures::redis::{RedisExecutor, RedisWorker, Tasks};
use tracing_subscriber::layer::SubscriberExt;

fn double(x: u64) -> u64 {
    x * 2
}

#[test]
fn each_delivery_has_a_span_with_its_task_id_and_the_run_inside_it() {
    if !redis_server::available() {
        return;
    }
    // Global: the worker's reader runs on a thread of its own.
    let recorder = Recorder::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(recorder.clone()))
        .unwrap();
    let server = redis_server::RedisServer::start("tracing", false);
    let tasks = || Tasks::new().add("double/v1", double);
    let worker = RedisWorker::builder(&server.url, tasks()).spawn().unwrap();
    let ex = RedisExecutor::builder(&server.url, tasks())
        .build()
        .unwrap();
    let fut = ex.submit(double, 21).unwrap();
    let id = fut.task_id().unwrap().to_string();
    assert_eq!(fut.result(), Ok(42));
    drop(ex);
    worker.stop();

    let deliveries = recorder.named("redis_task");
    let delivery = deliveries
        .iter()
        .find(|s| s.fields.get("task") == Some(&id))
        .unwrap_or_else(|| panic!("no redis_task span for {id}: {deliveries:#?}"));
    assert_eq!(delivery.fields["function"], "double/v1");
    assert_eq!(delivery.fields["delivery"], "1");
    // The pool's span records its outcome just after the task's answer went out, on the
    // pool's thread: wait for it rather than race it.
    let runs = || -> Vec<_> {
        recorder
            .named("task")
            .into_iter()
            .filter(|t| t.parent.as_deref() == Some("redis_task"))
            .collect()
    };
    let t = std::time::Instant::now();
    while !runs().iter().all(|t| t.fields.contains_key("outcome")) {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "{:#?}",
            runs()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let runs = runs();
    assert_eq!(runs.len(), deliveries.len(), "{runs:#?}");
    assert!(
        runs.iter().all(|t| t.fields["outcome"] == "ok"),
        "{runs:#?}"
    );
}
