//! Feature `metrics`: the local pools count their tasks by outcome, time their queue wait and
//! run, and keep the queue depth and worker gauges, through the `metrics` facade.
#![cfg(all(unix, feature = "process", feature = "metrics"))]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use concurrent_futures::{ProcessPoolExecutor, TaskError, ThreadPoolExecutor};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

concurrent_futures::worker_test!();

/// Every metric by `name{label=value,...}`: a counter's total, a gauge's value, a
/// histogram's number of samples.
#[derive(Default)]
struct Store(Mutex<HashMap<String, f64>>);

struct Cell {
    key: String,
    store: Arc<Store>,
}

impl Cell {
    fn update(&self, f: impl FnOnce(f64) -> f64) {
        let mut all = self.store.0.lock().unwrap();
        let value = all.entry(self.key.clone()).or_default();
        *value = f(*value);
    }
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.update(|v| v + value as f64);
    }
    fn absolute(&self, value: u64) {
        self.update(|_| value as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

impl HistogramFn for Cell {
    fn record(&self, _: f64) {
        self.update(|v| v + 1.0);
    }
}

struct Collect(Arc<Store>);

impl Collect {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        Arc::new(Cell {
            key: format!("{}{{{}}}", key.name(), labels.join(",")),
            store: self.0.clone(),
        })
    }
}

impl Recorder for Collect {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn the_pools_count_time_and_gauge_their_tasks() {
    concurrent_futures::init();
    let store = Arc::new(Store::default());
    metrics::set_global_recorder(Collect(store.clone())).unwrap();
    let get = |key: &str| store.0.lock().unwrap().get(key).copied().unwrap_or(0.0);

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
    threads.shutdown();

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
        11.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_started_total{executor=thread}"),
        11.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_completed_total{executor=thread,outcome=ok}"),
        10.0
    );
    assert_eq!(
        get("concurrent_futures_tasks_completed_total{executor=thread,outcome=panicked}"),
        1.0
    );
    assert_eq!(
        get("concurrent_futures_task_queue_wait_seconds{executor=thread}"),
        11.0
    );
    assert_eq!(
        get("concurrent_futures_task_run_seconds{executor=thread}"),
        11.0
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
