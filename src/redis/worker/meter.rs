//! Feature `metrics`: what a Redis worker counts, under the names and labels of the local
//! pools (`executor="redis"`), so one dashboard reads all three executors.

use std::time::Duration;

use ::redis::Value;

use crate::redis::conn::Link;
use crate::redis::host;
use crate::redis::wire::{self, GROUP};

const EXECUTOR: &str = "redis";

/// A task starts: counted, with its wait since its entry was added (the entry's id is
/// Redis's clock, the wait's end this worker's: skew between the two shows up here).
pub(super) fn started(entry_id: &str) {
    metrics::counter!("concurrent_futures_tasks_started_total", "executor" => EXECUTOR)
        .increment(1);
    metrics::gauge!("concurrent_futures_tasks_in_flight", "executor" => EXECUTOR).increment(1.0);
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
    metrics::gauge!("concurrent_futures_tasks_in_flight", "executor" => EXECUTOR).decrement(1.0);
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

/// The queue as the autoscaling signal, read with the heartbeat: the gauges
/// `concurrent_futures_queue_depth` (entries no worker has taken) and
/// `concurrent_futures_queue_oldest_age_seconds` (how long the oldest of them has waited,
/// 0 when none waits). A finished entry is deleted, so an entry is either held by a worker
/// (in the group's pending list) or waiting, and the waiting ones come after the newest
/// held one. Nothing is set when Redis cannot be asked.
pub(super) fn queue(link: &mut Link, queue: &str) {
    let counts = link.once(|con| {
        ::redis::pipe()
            .cmd("XLEN")
            .arg(queue)
            .cmd("XPENDING")
            .arg(queue)
            .arg(GROUP)
            .query::<Vec<Value>>(con)
    });
    let Ok(counts) = counts else {
        return;
    };
    let len = counts.first().and_then(wire::int).unwrap_or(0).max(0);
    let summary = counts.get(1).and_then(wire::array).unwrap_or_default();
    let held = summary.first().and_then(wire::int).unwrap_or(0).max(0);
    let newest_held = summary.get(2).and_then(wire::text).map(str::to_owned);
    let waiting = (len - held).max(0);
    metrics::gauge!("concurrent_futures_queue_depth", "executor" => EXECUTOR).set(waiting as f64);
    let mut age = 0.0;
    if waiting > 0 {
        let start = newest_held.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let first = link.once(|con| {
            ::redis::cmd("XRANGE")
                .arg(queue)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query::<Value>(con)
        });
        let added = first.ok().and_then(|v| {
            let entry = wire::array(&v)?.first().cloned()?;
            let id = wire::text(wire::array(&entry)?.first()?)?.to_owned();
            id.split('-').next()?.parse::<u64>().ok()
        });
        if let Some(added) = added {
            age = host::now_ms().saturating_sub(added) as f64 / 1000.0;
        }
    }
    metrics::gauge!("concurrent_futures_queue_oldest_age_seconds", "executor" => EXECUTOR).set(age);
}
