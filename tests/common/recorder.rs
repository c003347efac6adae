//! A global `metrics` recorder for the tests of feature `metrics`: every metric by
//! `name{label=value,...}`, a counter's total, a gauge's value, a histogram's count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

/// What the recorder installed by [`Recorded::install`] saw.
pub struct Recorded(Arc<Store>);

impl Recorded {
    /// Installs the process's global recorder (once per test binary).
    pub fn install() -> Recorded {
        let store = Arc::new(Store::default());
        metrics::set_global_recorder(Collect(store.clone())).unwrap();
        Recorded(store)
    }

    /// The value of `key` (`name{label=value,...}`, labels sorted), 0 if never recorded.
    pub fn get(&self, key: &str) -> f64 {
        self.0.0.lock().unwrap().get(key).copied().unwrap_or(0.0)
    }
}

/// Every metric by `name{label=value,...}`: a counter's total, a gauge's value, a
/// histogram's number of samples.
#[derive(Default)]
pub struct Store(Mutex<HashMap<String, f64>>);

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
