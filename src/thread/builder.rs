//! [`ThreadPoolBuilder`]: the settings of a [`ThreadPoolExecutor`].

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use super::ThreadPoolExecutor;
use crate::error::BuildError;

type Initializer = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

pub(crate) struct Config {
    pub(crate) max_workers: usize,
    thread_name_prefix: Option<String>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) time_limit: Option<Duration>,
    pub(crate) initializer: Option<Initializer>,
}

impl Config {
    pub(crate) fn thread_name_prefix(&self, pool_id: u32) -> String {
        match &self.thread_name_prefix {
            Some(prefix) => prefix.clone(),
            None => format!("ThreadPoolExecutor-{pool_id}"),
        }
    }
}

/// Settings for a [`ThreadPoolExecutor`]: Python's constructor arguments, and a few more.
///
/// # Examples
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
/// use std::time::Duration;
///
/// let pool = ThreadPoolExecutor::builder()
///     .max_workers(8)
///     .thread_name_prefix("fetch")
///     .stack_size(256 * 1024)
///     .idle_timeout(Duration::from_secs(30))
///     .time_limit(Duration::from_secs(60))
///     .initializer(|| println!("worker up"))
///     .build()?;
/// # Ok::<(), concurrent_futures::BuildError>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct ThreadPoolBuilder {
    max_workers: Option<usize>,
    thread_name_prefix: Option<String>,
    stack_size: Option<usize>,
    keep_alive: Option<Duration>,
    time_limit: Option<Duration>,
    initializer: Option<Initializer>,
}

impl ThreadPoolBuilder {
    /// The defaults; same as [`ThreadPoolExecutor::builder`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = concurrent_futures::ThreadPoolBuilder::new().build()?;
    /// # Ok::<(), concurrent_futures::BuildError>(())
    /// ```
    pub fn new() -> Self {
        ThreadPoolBuilder {
            max_workers: None,
            thread_name_prefix: None,
            stack_size: None,
            keep_alive: None,
            time_limit: None,
            initializer: None,
        }
    }

    /// The most threads to run at once. Default `min(32, cpus + 4)`, as in Python; 0 is an
    /// error at [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::builder().max_workers(2).build()?;
    /// assert_eq!(pool.max_workers(), 2);
    /// # Ok::<(), concurrent_futures::BuildError>(())
    /// ```
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// Threads are named `{prefix}_{n}`. Default prefix `ThreadPoolExecutor-{pool}`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = concurrent_futures::ThreadPoolExecutor::builder()
    ///     .thread_name_prefix("fetch")
    ///     .build()?;
    /// let name = pool.submit(|| std::thread::current().name().map(str::to_owned))?.result()?;
    /// assert!(name.unwrap().starts_with("fetch_"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name_prefix = Some(prefix.into());
        self
    }

    /// The stack size of each worker thread, in bytes (default: the standard library's).
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::builder().stack_size(8 << 20).build()?;
    /// # Ok::<(), concurrent_futures::BuildError>(())
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// An idle thread retires after waiting this long for work; the pool starts a new one
    /// when work comes. Default: threads never retire, as in Python. The same setting as
    /// [`ProcessPoolBuilder::idle_timeout`](crate::ProcessPoolBuilder::idle_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// # use std::time::Duration;
    /// let pool = ThreadPoolExecutor::builder().idle_timeout(Duration::from_millis(10)).build()?;
    /// pool.submit(|| ())?.result()?;
    /// while pool.threads() > 0 {
    ///     std::thread::sleep(Duration::from_millis(5)); // the idle thread retires
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.keep_alive = Some(idle);
        self
    }

    /// The former name of [`idle_timeout`](Self::idle_timeout), kept for one release.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// # use std::time::Duration;
    /// #[allow(deprecated)]
    /// let pool = ThreadPoolExecutor::builder().keep_alive(Duration::from_secs(30)).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[deprecated(
        since = "0.2.0",
        note = "renamed `idle_timeout`, the name the process pool uses for the same setting"
    )]
    pub fn keep_alive(self, idle: Duration) -> Self {
        self.idle_timeout(idle)
    }

    /// The time limit of every task: a task still running this long after it started has
    /// its future fail with [`TaskError::TimedOut`](crate::TaskError::TimedOut), which wakes
    /// everyone waiting on it and runs its callbacks. The same setting as
    /// [`ProcessPoolBuilder::time_limit`](crate::ProcessPoolBuilder::time_limit) and the Redis
    /// executor's. Per task: [`TaskOptions::time_limit`](crate::TaskOptions::time_limit) with
    /// [`ThreadPoolExecutor::submit_with`](crate::ThreadPoolExecutor::submit_with). Default: none.
    ///
    /// **A thread cannot be killed.** The closure runs on to its end, its result is
    /// dropped, and its worker is busy until then: the limit bounds how long a caller waits,
    /// not how long the work takes, and a task that never returns holds its thread for
    /// good. To stop the work itself, run it on the process pool, whose limit kills the
    /// worker process and starts another.
    ///
    /// One watchdog thread per pool, started by `build`, sleeps until the earliest deadline;
    /// a limit fires within the scheduler's wake-up latency of its deadline. The callbacks
    /// of a timed-out future run on that thread, so one that blocks delays the next
    /// time-out. A task a waiting worker runs inline (see `Future::result`) is not timed.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{TaskError, ThreadPoolExecutor};
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    ///
    /// let pool = ThreadPoolExecutor::builder().time_limit(Duration::from_millis(50)).build()?;
    /// let (release, stuck) = mpsc::channel::<()>();
    /// let fut = pool.submit(move || stuck.recv().ok())?;
    /// assert_eq!(fut.result(), Err(TaskError::TimedOut)); // the task itself still waits
    /// release.send(()).unwrap(); // and ends now; its result is dropped
    /// assert_eq!(pool.submit(|| 7)?.result()?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Runs `init` at the start of every worker thread, before it takes any task.
    ///
    /// If it panics, the pool is broken, as in Python: every queued task fails with
    /// [`TaskError::BrokenExecutor`](crate::TaskError::BrokenExecutor) and later submits get
    /// [`SubmitError::Broken`](crate::SubmitError::Broken). For an initializer that can fail
    /// with an error, see [`try_initializer`](Self::try_initializer).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    /// use std::cell::Cell;
    ///
    /// thread_local!(static CONN: Cell<u32> = const { Cell::new(0) });
    /// let pool = ThreadPoolExecutor::builder()
    ///     .initializer(|| CONN.with(|c| c.set(7)))
    ///     .build()?;
    /// assert_eq!(pool.submit(|| CONN.with(Cell::get))?.result()?, 7);
    ///
    /// // A closure that never returns needs no annotation.
    /// let doomed = ThreadPoolExecutor::builder()
    ///     .initializer(|| panic!("no database"))
    ///     .build()?;
    /// assert!(doomed.submit(|| 1)?.result().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn initializer<F>(self, init: F) -> Self
    where
        F: Fn() + Send + Sync + 'static,
    {
        self.try_initializer(move || {
            init();
            Ok::<(), std::convert::Infallible>(())
        })
    }

    /// Like [`initializer`](Self::initializer) for an initializer that returns a `Result`:
    /// an `Err` (any `Display`) breaks the pool with its message, as a panic does.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{TaskError, ThreadPoolExecutor};
    ///
    /// let pool = ThreadPoolExecutor::builder()
    ///     .try_initializer(|| std::fs::metadata("/no/such/config").map(drop))
    ///     .build()?;
    /// let err = pool.submit(|| 1)?.result().unwrap_err();
    /// assert!(matches!(err, TaskError::BrokenExecutor(_)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_initializer<F, E>(mut self, init: F) -> Self
    where
        F: Fn() -> Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        self.initializer = Some(Arc::new(move || {
            match panic::catch_unwind(AssertUnwindSafe(&init)) {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(payload) => Err(format!(
                    "initializer panicked: {}",
                    crate::error::panic_message(&*payload)
                )),
            }
        }));
        self
    }

    /// Builds the pool. No thread starts until the first task is submitted.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroWorkers`] if `max_workers` is 0; [`BuildError::InvalidThreadName`]
    /// if the prefix holds a NUL byte; [`BuildError::ThreadStart`] if a
    /// [`time_limit`](Self::time_limit) was set and its watchdog thread could not start.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{BuildError, ThreadPoolExecutor};
    /// let err = ThreadPoolExecutor::builder().thread_name_prefix("a\0b").build().unwrap_err();
    /// assert_eq!(err, BuildError::InvalidThreadName);
    /// ```
    pub fn build(self) -> Result<ThreadPoolExecutor, BuildError> {
        let max_workers = match self.max_workers {
            Some(0) => return Err(BuildError::ZeroWorkers),
            Some(n) => n,
            None => default_max_workers(),
        };
        if self
            .thread_name_prefix
            .as_deref()
            .is_some_and(|p| p.contains('\0'))
        {
            return Err(BuildError::InvalidThreadName);
        }
        ThreadPoolExecutor::from_config(Config {
            max_workers,
            thread_name_prefix: self.thread_name_prefix,
            stack_size: self.stack_size,
            keep_alive: self.keep_alive,
            time_limit: self.time_limit,
            initializer: self.initializer,
        })
    }
}

/// Python's default: `min(32, (os.process_cpu_count() or 1) + 4)`.
fn default_max_workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus + 4).min(32)
}

impl Default for ThreadPoolBuilder {
    fn default() -> Self {
        ThreadPoolBuilder::new()
    }
}

impl fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolBuilder")
            .field("max_workers", &self.max_workers)
            .field("thread_name_prefix", &self.thread_name_prefix)
            .field("stack_size", &self.stack_size)
            .field("keep_alive", &self.keep_alive)
            .field("time_limit", &self.time_limit)
            .field("initializer", &self.initializer.is_some())
            .finish()
    }
}
