//! Feature `metrics`: the local pools count their tasks by outcome, time their queue wait and
//! run, and keep the queue depth and worker gauges, through the `metrics` facade.
#![cfg(all(unix, feature = "process", feature = "metrics"))]

mod common;

use common::recorder::Recorded;
use concurrent_futures::{ProcessPoolExecutor, TaskError, ThreadPoolExecutor};

concurrent_futures::worker_test!();

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn the_pools_count_time_and_gauge_their_tasks() {
    concurrent_futures::init();
    let recorded = Recorded::install();
    let get = |key: &str| recorded.get(key);

    let threads = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let futs: Vec<_> = (0..10u64)
        .map(|i| threads.submit(move || i).unwrap())
        .collect();
    for (i, f) in futs.into_iter().enumerate() {
        assert_eq!(f.result(), Ok(i as u64));
    }
    let boom = threads.submit(|| -> u8 { panic!("boom") }).unwrap();
    assert!(matches!(boom.result(), Err(TaskError::Panicked(_))));
    // In flight while it runs, not before nor after.
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let (running, started) = std::sync::mpsc::channel::<()>();
    let held = threads
        .submit(move || {
            running.send(()).unwrap();
            gate.recv().unwrap()
        })
        .unwrap();
    started.recv().unwrap();
    assert_eq!(
        get("concurrent_futures_tasks_in_flight{executor=thread}"),
        1.0
    );
    release.send(()).unwrap();
    held.result().unwrap();
    threads.shutdown();
    assert_eq!(
        get("concurrent_futures_tasks_in_flight{executor=thread}"),
        0.0
    );

    let processes = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    for i in 0..3u64 {
        assert_eq!(processes.submit(square, i).unwrap().result(), Ok(i * i));
    }
    processes.shutdown();

    assert_eq!(
        get("concurrent_futures_tasks_submitted_total{executor=thread}"),
        12.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_started_total{executor=thread}"),
        12.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_completed_total{executor=thread,outcome=ok}"),
        11.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_completed_total{executor=thread,outcome=panicked}"),
        1.0
    );
    assert_eq!(
        get("concurrent_futures_task_queue_wait_seconds{executor=thread}"),
        12.0
    );
    assert_eq!(
        get("concurrent_futures_task_run_seconds{executor=thread}"),
        12.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_submitted_total{executor=process}"),
        3.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_completed_total{executor=process,outcome=ok}"),
        3.0
    );
    assert_eq!(
        get("concurrent_futures_task_run_seconds{executor=process}"),
        3.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_in_flight{executor=process}"),
        0.0
    );
    // Everything taken and every worker gone once both pools have shut down.
    for executor in ["thread", "process"] {
        assert_eq!(
            get(&format!(
                "concurrent_futures_queue_depth{{executor={executor}}}"
            )),
            0.0
        );
        assert_eq!(
            get(&format!(
                "concurrent_futures_workers{{executor={executor}}}"
            )),
            0.0
        );
    }
}
