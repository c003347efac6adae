//! Feature `metrics`: what a Redis worker counts, under the names and labels of the local
//! pools (`executor="redis"`), so one dashboard reads all three executors.

use std::time::Duration;

use crate::redis::host;

const EXECUTOR: &str = "redis";

/// A task starts: counted, with its wait since its entry was added (the entry's id is
/// Redis's clock, the wait's end this worker's: skew between the two shows up here).
pub(super) fn started(entry_id: &str) {
    metrics::counter!("concurrent_futures_tasks_started_total", "executor" => EXECUTOR)
        .increment(1);
    let added = entry_id
        .split('-')
        .next()
        .and_then(|ms| ms.parse::<u64>().ok());
    if let Some(added) = added {
        let wait = host::now_ms().saturating_sub(added);
        metrics::histogram!("concurrent_futures_task_queue_wait_seconds", "executor" => EXECUTOR)
            .record(wait as f64 / 1000.0);
    }
}

/// A task is answered with `status` (the worker's outcome) after running `took`.
pub(super) fn completed(status: &'static str, took: Duration) {
    // The local pools' outcome names.
    let outcome = match status {
        "panic" => "panicked",
        "timeout" => "timed_out",
        "died" => "worker_died",
        other => other,
    };
    metrics::counter!(
        "concurrent_futures_tasks_completed_total",
        "executor" => EXECUTOR,
        "outcome" => outcome
    )
    .increment(1);
    metrics::histogram!("concurrent_futures_task_run_seconds", "executor" => EXECUTOR)
        .record(took.as_secs_f64());
}

/// A failed run is tried again.
pub(super) fn retried() {
    metrics::counter!("concurrent_futures_tasks_retried_total", "executor" => EXECUTOR)
        .increment(1);
}

/// A task or entry goes to the dead letters.
pub(super) fn dead_lettered() {
    metrics::counter!("concurrent_futures_tasks_dead_lettered_total", "executor" => EXECUTOR)
        .increment(1);
}
