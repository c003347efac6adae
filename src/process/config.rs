//! The settings of a process pool, as the builder checked them: what the pool, its managers
//! and their connections read.

use std::fmt;
use std::time::Duration;

/// What the builder checked, read by the pool, its managers and their connections.
#[derive(Clone)]
pub(super) struct Config {
    pub(super) max_workers: usize,
    pub(super) max_tasks_per_child: Option<usize>,
    pub(super) max_memory_per_child: Option<u64>,
    pub(super) time_limit: Option<Duration>,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) frame_limit: usize,
    pub(super) start_timeout: Duration,
    pub(super) max_start_failures: u32,
    pub(super) initializer: Option<fn()>,
    pub(super) kill_grace: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("max_workers", &self.max_workers)
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field("max_memory_per_child", &self.max_memory_per_child)
            .field("time_limit", &self.time_limit)
            .field("idle_timeout", &self.idle_timeout)
            .field("frame_limit", &self.frame_limit)
            .field("initializer", &self.initializer.is_some())
            .finish_non_exhaustive()
    }
}
