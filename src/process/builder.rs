//! [`ProcessPoolBuilder`]: the settings of a process pool, checked at `build`.

use std::time::Duration;

use super::ProcessPoolExecutor;
use super::config::Config;
use super::connection::Connection;
use super::pool::Shared;
use super::worker;
use crate::error::BuildError;

/// The largest frame either side accepts unless the builder says otherwise: 64 MiB.
pub(crate) const DEFAULT_FRAME_LIMIT: usize = 64 << 20;

/// The smallest [`ProcessPoolBuilder::max_frame_bytes`] that [`build`](ProcessPoolBuilder::build)
/// accepts: 1 KiB, room for a task's addresses, a small argument and an error message.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{BuildError, ProcessPoolBuilder, MIN_FRAME_BYTES};
///
/// let err = ProcessPoolBuilder::new().max_frame_bytes(MIN_FRAME_BYTES - 1).build().unwrap_err();
/// assert!(matches!(err, BuildError::FrameLimit { .. }));
/// ```
#[cfg_attr(docsrs, doc(cfg(all(unix, feature = "process"))))]
pub const MIN_FRAME_BYTES: usize = 1024;

/// Settings for a [`ProcessPoolExecutor`].
///
/// # Examples
///
/// ```no_run
/// use concurrent_futures::ProcessPoolExecutor;
/// use std::time::Duration;
///
/// concurrent_futures::init();
/// let pool = ProcessPoolExecutor::builder()
///     .max_workers(4)
///     .max_tasks_per_child(1000)
///     .time_limit(Duration::from_secs(60))
///     .idle_timeout(Duration::from_secs(30))
///     .build()?;
/// # Ok::<(), concurrent_futures::BuildError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
#[cfg_attr(docsrs, doc(cfg(all(unix, feature = "process"))))]
pub struct ProcessPoolBuilder {
    config: Config,
}

impl Default for ProcessPoolBuilder {
    fn default() -> Self {
        ProcessPoolBuilder::new()
    }
}

impl ProcessPoolBuilder {
    /// The defaults: one worker per CPU, no time limit, workers live until shutdown.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = concurrent_futures::ProcessPoolBuilder::new().max_workers(2);
    /// ```
    pub fn new() -> Self {
        ProcessPoolBuilder {
            config: Config {
                max_workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
                max_tasks_per_child: None,
                max_memory_per_child: None,
                time_limit: None,
                idle_timeout: None,
                frame_limit: DEFAULT_FRAME_LIMIT,
                start_timeout: Duration::from_secs(20),
                max_start_failures: 3,
                initializer: None,
                kill_grace: Duration::from_secs(1),
            },
        }
    }

    /// The number of worker processes (default: the number of CPUs); 0 is an error at
    /// [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = concurrent_futures::ProcessPoolBuilder::new().max_workers(4);
    /// ```
    pub fn max_workers(mut self, n: usize) -> Self {
        self.config.max_workers = n;
        self
    }

    /// Replaces a worker after it has run this many tasks (Python's `max_tasks_per_child`),
    /// to bound what a leaking library can hold on to.
    ///
    /// # Examples
    ///
    /// ```
    /// // A fresh worker after every 100 tasks.
    /// let builder = concurrent_futures::ProcessPoolBuilder::new().max_tasks_per_child(100);
    /// ```
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.config.max_tasks_per_child = Some(n.max(1));
        self
    }

    /// Replaces a worker whose resident memory has grown past `bytes` when it finishes a
    /// task (Celery's `worker_max_memory_per_child`): a library that leaks or a cache that
    /// only grows is reset without a fixed task count. The task that pushed it over still
    /// completes normally. Read from `/proc` (Linux); where that cannot be read, the limit is
    /// not applied.
    ///
    /// # Examples
    ///
    /// ```
    /// // Recycle a worker once it holds more than 512 MiB.
    /// let b = concurrent_futures::ProcessPoolBuilder::new().max_memory_per_child(512 << 20);
    /// ```
    pub fn max_memory_per_child(mut self, bytes: u64) -> Self {
        self.config.max_memory_per_child = Some(bytes);
        self
    }

    /// The time limit of every task; a task over it fails with
    /// [`TaskError::TimedOut`](crate::TaskError::TimedOut) and its worker is stopped (SIGTERM, then SIGKILL after the
    /// [`kill_grace`](Self::kill_grace)) and replaced. Per task: [`TaskOptions::time_limit`](crate::TaskOptions::time_limit)
    /// with [`ProcessPoolExecutor::submit_with`]. In a [`map`](ProcessPoolExecutor::map)
    /// the limit is per item (a chunk of `n` items gets `n` times it). The same setting as
    /// [`ThreadPoolBuilder::time_limit`](crate::ThreadPoolBuilder::time_limit) (which cannot
    /// kill its thread) and the Redis executor's.
    ///
    /// Limits are enforced with the kernel's socket timer, so they fire up to a few
    /// milliseconds late (one timer tick); a task a little over a very short limit may still
    /// finish. A zero limit expires at once: the task fails with
    /// [`TaskError::TimedOut`](crate::TaskError::TimedOut) without being sent to a worker. A limit too large to add to the clock (`Duration::MAX`)
    /// means no limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = concurrent_futures::ProcessPoolBuilder::new().time_limit(Duration::from_secs(60));
    /// ```
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.config.time_limit = Some(limit);
        self
    }

    /// The old name of [`time_limit`](Self::time_limit).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// #[allow(deprecated)]
    /// let builder = concurrent_futures::ProcessPoolBuilder::new().task_timeout(Duration::from_secs(60));
    /// ```
    #[deprecated(
        since = "0.2.0",
        note = "renamed `time_limit`, the name the thread pool and Redis use for the same setting"
    )]
    pub fn task_timeout(self, limit: Duration) -> Self {
        self.time_limit(limit)
    }

    /// How long a worker past its time limit gets between SIGTERM and SIGKILL (default 1 s).
    /// Zero sends SIGKILL right after SIGTERM; `Duration::MAX` waits for SIGTERM to work.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = concurrent_futures::ProcessPoolBuilder::new().kill_grace(Duration::from_millis(100));
    /// ```
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.config.kill_grace = grace;
        self
    }

    /// Lets a worker (and its manager thread) exit after waiting this long for work; a new
    /// one starts when work comes. Zero lets a worker go as soon as no work is queued for it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = concurrent_futures::ProcessPoolBuilder::new().idle_timeout(Duration::from_secs(30));
    /// ```
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.config.idle_timeout = Some(idle);
        self
    }

    /// Runs `init` in every worker process before it takes any task (Python's
    /// `initializer`), e.g. to open a connection or load a model into a `static`. If it
    /// panics the worker never starts: for the first worker that fails [`build`](Self::build)
    /// with [`BuildError::WorkerStart`]; later, repeated failures break the pool.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use concurrent_futures::ProcessPoolExecutor;
    /// use std::sync::OnceLock;
    ///
    /// static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
    /// fn load() { TABLE.get_or_init(|| (0..1000).collect()); }
    /// fn lookup(i: usize) -> u64 { TABLE.get().map_or(0, |t| t[i]) }
    ///
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::builder().initializer(load).build()?;
    /// assert_eq!(pool.submit(lookup, 7)?.result()?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn initializer(mut self, init: fn()) -> Self {
        self.config.initializer = Some(init);
        self
    }

    /// The largest argument or result, encoded, that may cross between processes (default
    /// 64 MiB); a larger one fails its task with [`TaskError::Transport`](crate::TaskError::Transport). Below
    /// [`MIN_FRAME_BYTES`], [`build`](Self::build) fails with [`BuildError::FrameLimit`].
    /// Bytes are read as they arrive, so a large limit costs nothing until used.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = concurrent_futures::ProcessPoolBuilder::new().max_frame_bytes(1 << 20);
    /// ```
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.config.frame_limit = bytes.min(u32::MAX as usize);
        self
    }

    /// Starts the pool and its first worker, to check that workers can start at all. More
    /// workers (and their manager threads) start as work arrives, up to `max_workers`; an
    /// idle worker is always used before a new one is started.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroWorkers`]; [`BuildError::FrameLimit`] if
    /// [`max_frame_bytes`](Self::max_frame_bytes) is below [`MIN_FRAME_BYTES`];
    /// [`BuildError::NotInitialized`] if [`init`](crate::init) has not run;
    /// [`BuildError::WorkerStart`] if the first worker cannot start, runs a different build
    /// or its initializer fails (the message says how, with a hint for test binaries).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use concurrent_futures::{BuildError, ProcessPoolExecutor};
    ///
    /// concurrent_futures::init(); // first thing in main
    /// let pool = ProcessPoolExecutor::builder().max_workers(2).build()?;
    /// assert_eq!(pool.max_workers(), 2);
    /// assert!(matches!(
    ///     ProcessPoolExecutor::builder().max_workers(0).build(),
    ///     Err(BuildError::ZeroWorkers)
    /// ));
    /// # Ok::<(), BuildError>(())
    /// ```
    pub fn build(self) -> Result<ProcessPoolExecutor, BuildError> {
        if self.config.max_workers == 0 {
            return Err(BuildError::ZeroWorkers);
        }
        if self.config.frame_limit < MIN_FRAME_BYTES {
            return Err(BuildError::FrameLimit {
                bytes: self.config.frame_limit,
                minimum: MIN_FRAME_BYTES,
            });
        }
        if !worker::initialized() {
            return Err(BuildError::NotInitialized);
        }
        let shared = Shared::new(self.config);
        let first =
            Connection::start(&shared.config, shared.workers()).map_err(BuildError::WorkerStart)?;
        shared
            .start_manager(first)
            .map_err(|e| BuildError::WorkerStart(format!("cannot start a manager thread: {e}")))?;
        Ok(ProcessPoolExecutor { shared })
    }
}
