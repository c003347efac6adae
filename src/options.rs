//! [`TaskOptions`]: per-task settings, one type for every executor's `submit_with`.
//!
//! The time limit means the same on every executor. The settings only a queue can honour
//! (retries, a chosen id, a delay) are set by methods the `redis` module adds, and a local
//! pool refuses a task that carries one ([`SubmitError::Unsupported`]) rather than ignore it.
//!
//! [`SubmitError::Unsupported`]: crate::SubmitError::Unsupported

use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Per-task settings, passed to `submit_with` on any executor.
///
/// | setting | threads | processes | Redis |
/// | --- | --- | --- | --- |
/// | [`time_limit`](Self::time_limit) | future fails with `TimedOut`; the thread runs on | worker process killed | worker enforces it |
/// | `retries`, `id`, `delay`, `at` (feature `redis`) | refused | refused | yes |
///
/// Unset fields take the executor's defaults ([`ThreadPoolBuilder::time_limit`],
/// [`ProcessPoolBuilder::time_limit`], the Redis executor's builder).
///
/// [`ThreadPoolBuilder::time_limit`]: crate::ThreadPoolBuilder::time_limit
/// [`ProcessPoolBuilder::time_limit`]: crate::ProcessPoolBuilder::time_limit
///
/// # Examples
///
/// ```
/// use concurrent_futures::{TaskError, TaskOptions, ThreadPoolExecutor};
/// use std::time::Duration;
///
/// let pool = ThreadPoolExecutor::new();
/// let opts = TaskOptions::new().time_limit(Duration::from_millis(20));
/// let slow = pool.submit_with(|| std::thread::sleep(Duration::from_millis(500)), opts)?;
/// assert_eq!(slow.result(), Err(TaskError::TimedOut));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskOptions {
    pub(crate) time_limit: Option<Duration>,
    pub(crate) retries: Option<(u32, Duration)>,
    /// A checked task id's text (`redis::TaskId`), kept as text so that this module knows
    /// nothing of Redis.
    pub(crate) id: Option<Arc<str>>,
    pub(crate) due: Option<SystemTime>,
}

impl TaskOptions {
    /// No per-task settings: the executor's defaults apply.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::TaskOptions;
    /// assert_eq!(TaskOptions::new(), TaskOptions::default());
    /// ```
    pub fn new() -> TaskOptions {
        TaskOptions::default()
    }

    /// The longest the task may run, counted from its start: past it the task's future
    /// fails with [`TaskError::TimedOut`](crate::TaskError::TimedOut). A process pool and a
    /// Redis worker running tasks in processes kill the process that runs it. A thread cannot
    /// be killed: on a thread pool the closure runs on to its end and its result is dropped.
    /// Unlike [`Future::result_timeout`](crate::Future::result_timeout), which only stops
    /// waiting, this ends the task for everyone.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::TaskOptions;
    /// let opts = TaskOptions::new().time_limit(std::time::Duration::from_secs(5));
    /// assert_ne!(opts, TaskOptions::new());
    /// ```
    pub fn time_limit(mut self, limit: Duration) -> TaskOptions {
        self.time_limit = Some(limit);
        self
    }

    /// The first setting that only a queue honours, by its method's name: what a local pool
    /// refuses.
    pub(crate) fn queue_only(&self) -> Option<&'static str> {
        if self.retries.is_some() {
            Some("retries")
        } else if self.id.is_some() {
            Some("id")
        } else if self.due.is_some() {
            Some("delay")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queue_settings_are_named() {
        let limited = TaskOptions::new().time_limit(Duration::from_secs(1));
        assert_eq!(limited.queue_only(), None);
        let mut retried = limited.clone();
        retried.retries = Some((1, Duration::ZERO));
        assert_eq!(retried.queue_only(), Some("retries"));
        let mut named = TaskOptions::new();
        named.id = Some("a".into());
        assert_eq!(named.queue_only(), Some("id"));
        let mut later = TaskOptions::new();
        later.due = Some(SystemTime::now());
        assert_eq!(later.queue_only(), Some("delay"));
    }
}
