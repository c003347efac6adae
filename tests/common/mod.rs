//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use concurrent_futures::lock::Event;

#[cfg(feature = "metrics")]
pub mod recorder;
#[cfg(feature = "tracing")]
pub mod spans;

/// A generous bound for waits that should end promptly: only hit if the code under test
/// hangs, so it never decides a pass on a fast machine.
pub const HANG: Duration = Duration::from_secs(30);

/// A latch that tasks block on until the test opens it.
#[derive(Clone, Default)]
pub struct Gate(Arc<Event>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    pub fn open(&self) {
        self.0.set();
    }

    /// Blocks until opened; panics if the test forgot to open it.
    pub fn pass(&self) {
        assert!(self.0.wait_timeout(HANG), "gate never opened");
    }
}

static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LOGS.lock().unwrap().push(format!(
            "{} {}: {}",
            record.level(),
            record.target(),
            record.args()
        ));
    }
    fn flush(&self) {}
}

/// Installs a logger that keeps every record, for tests that check what was reported.
pub fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        static CAPTURE: Capture = Capture;
        log::set_logger(&CAPTURE).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// The captured records that contain `needle`.
pub fn logged(needle: &str) -> Vec<String> {
    LOGS.lock()
        .unwrap()
        .iter()
        .filter(|r| r.contains(needle))
        .cloned()
        .collect()
}

/// Polls `cond` until it holds; fails only if it never does within [`HANG`].
pub fn eventually(mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + HANG;
    while !cond() {
        assert!(Instant::now() < end, "condition never held");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether process `pid` exists and is not a zombie (Linux).
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// This test binary, set to run only the test `name` (a helper that acts when its
/// environment variable is set), in a process of its own.
pub fn alone(name: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "-q"]);
    cmd
}

/// A process pool of `workers` workers, after `init()`.
#[cfg(all(unix, feature = "process"))]
pub fn pool(workers: usize) -> concurrent_futures::ProcessPoolExecutor {
    concurrent_futures::init();
    concurrent_futures::ProcessPoolExecutor::builder()
        .max_workers(workers)
        .build()
        .unwrap()
}
