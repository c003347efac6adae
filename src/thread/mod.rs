//! [`ThreadPoolExecutor`]: Python's `ThreadPoolExecutor`, returning [`Future`] handles.
//!
//! # How tasks reach threads
//!
//! The pool is a façade over a [`Registry`](crate::registry::Registry) of tasks: one
//! channel, threads started lazily as tasks arrive, idle ones reused first and retired after
//! the idle timeout, shutdown and breakage (its module docs give the rules). A task is a
//! single allocation holding its closure and its result slot ([`Task`]); the channel slot
//! holds a pointer to it. What is the thread pool's own: the worker body (the initializer,
//! running tasks, the per-worker counters), and taking a task back when a shutdown raced
//! with its submit, so that the closure returns to the caller.

mod builder;
mod map;
mod scope;
mod slice;
mod watchdog;
mod worker;

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

pub use self::builder::ThreadPoolBuilder;
pub use self::scope::{Scope, ScopedTask};
use self::watchdog::Watchdog;
use crate::context::WorkerCounters;
use crate::error::{BuildError, SubmitError};
use crate::future::{Call, Future, Runnable};
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
use crate::map::{Map, MapUnordered};
use crate::options::TaskOptions;
use crate::registry::Registry;

/// Ids for the pools of this process, so a worker can tell its own pool's tasks (0: none).
static NEXT_POOL_ID: AtomicU32 = AtomicU32::new(1);

/// A pool of threads that runs closures and hands back a [`Future`] for each:
/// Python's `concurrent.futures.ThreadPoolExecutor` (and `multiprocessing.pool.ThreadPool`).
///
/// Dropping the pool shuts it down and waits for the queued tasks, like leaving Python's
/// `with ThreadPoolExecutor() as pool:` block.
///
/// # Differences from Python
///
/// - A panic in a task is stored in its future; the worker lives on.
/// - A worker that waits on a still-queued task of its own pool runs it inline, so even
///   `max_workers(1)` cannot deadlock on nested submits.
/// - Idle threads can retire after [`keep_alive`](ThreadPoolBuilder::keep_alive).
/// - [`map`](Self::map) is lazy over its input, keeps a bounded number of tasks in flight,
///   and a failed item does not end the iteration.
///
/// # Examples
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::builder().max_workers(4).thread_name_prefix("calc").build()?;
/// let fut = pool.submit(|| (1..=10u64).product::<u64>())?;
/// assert_eq!(fut.result()?, 3_628_800);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ThreadPoolExecutor {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    id: u32,
    registry: Registry<Arc<dyn Runnable>>,
    /// Each live worker's counters, and the totals of the workers that left.
    counters: Mutex<Counters>,
    /// Enforces the time limits: started with the pool if it has one, else at the first
    /// submit with a limit of its own.
    watchdog: OnceLock<Arc<Watchdog>>,
    /// Serializes starting the watchdog.
    watchdog_start: Mutex<()>,
    config: builder::Config,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The executor and every worker are gone: nothing is left to time.
        if let Some(watchdog) = self.watchdog.get() {
            watchdog.stop();
        }
    }
}

struct Counters {
    /// Each live worker's counters; a leaving worker folds its own into `retired`.
    workers: Vec<Arc<WorkerCounters>>,
    retired: (usize, usize),
}

impl ThreadPoolExecutor {
    /// A pool with the defaults: up to `min(32, cpus + 4)` threads, as in Python.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = concurrent_futures::ThreadPoolExecutor::new();
    /// assert!(pool.max_workers() >= 5);
    /// ```
    pub fn new() -> ThreadPoolExecutor {
        ThreadPoolBuilder::new()
            .build()
            .expect("the default settings are valid")
    }

    /// A builder to set the number of threads, their names, an initializer, stack size and
    /// keep-alive.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    /// use std::time::Duration;
    ///
    /// let pool = ThreadPoolExecutor::builder()
    ///     .max_workers(2)
    ///     .thread_name_prefix("io")
    ///     .idle_timeout(Duration::from_secs(5))
    ///     .build()?;
    /// let name = pool.submit(|| std::thread::current().name().map(String::from))?.result()?;
    /// assert_eq!(name.as_deref(), Some("io_0"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::new()
    }

    pub(crate) fn from_config(config: builder::Config) -> Result<ThreadPoolExecutor, BuildError> {
        // ORDERING: a unique number, nothing published with it: Relaxed.
        let id = NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed);
        let watchdog = OnceLock::new();
        if config.time_limit.is_some() {
            let name = format!("{}-watchdog", config.thread_name_prefix(id));
            let (started, _detached) =
                Watchdog::start(name).map_err(|e| BuildError::ThreadStart(e.to_string()))?;
            let _ = watchdog.set(started);
        }
        Ok(ThreadPoolExecutor {
            shared: Arc::new(Shared {
                id,
                registry: Registry::new("thread", config.max_workers, config.keep_alive, false),
                counters: Mutex::new(Counters {
                    workers: Vec::new(),
                    retired: (0, 0),
                }),
                watchdog,
                watchdog_start: Mutex::new(()),
                config,
            }),
        })
    }

    /// Schedules `task` on a worker thread and returns a [`Future`] for its result.
    ///
    /// Python: `executor.submit(fn, *args)`; capture the arguments in the closure.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Shutdown`] after [`shutdown`](Self::shutdown),
    /// [`SubmitError::Broken`] if an initializer failed, [`SubmitError::Spawn`] if no thread
    /// could be started; the closure comes back through [`SubmitError::into_inner`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let answer = pool.submit(|| 6 * 7)?;
    /// assert_eq!(answer.result()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit<F, T>(&self, task: F) -> Result<Future<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.shared.submit(task, None)
    }

    /// [`submit`](Self::submit) with per-task settings: the same call on every executor
    /// (Redis's `submit_with`, the process pool's `submit_with`).
    ///
    /// A [`time_limit`](TaskOptions::time_limit) counts from the task's start and
    /// overrides the pool's [`time_limit`](ThreadPoolBuilder::time_limit). Past it the future
    /// fails with [`TaskError::TimedOut`](crate::TaskError::TimedOut) and its callbacks run; a thread cannot be killed, so
    /// the closure runs on to its end, its result is dropped, and its worker stays busy until
    /// then. The first limited task starts the pool's watchdog thread.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit); also [`SubmitError::Unsupported`] for a setting only the
    /// Redis executor honours (retries, an id, a delay), and [`SubmitError::Spawn`] if the
    /// watchdog thread could not start. The closure comes back in each.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{TaskError, TaskOptions, ThreadPoolExecutor};
    /// use std::time::Duration;
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let opts = TaskOptions::new().time_limit(Duration::from_millis(10));
    /// let stuck = pool.submit_with(|| std::thread::sleep(Duration::from_millis(300)), opts.clone())?;
    /// let quick = pool.submit_with(|| 7, opts)?;
    /// assert_eq!(stuck.result(), Err(TaskError::TimedOut));
    /// assert_eq!(quick.result()?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit_with<F, T>(&self, task: F, opts: TaskOptions) -> Result<Future<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if let Some(option) = opts.queue_only() {
            return Err(SubmitError::Unsupported { task, option });
        }
        self.shared.submit(task, opts.time_limit)
    }

    /// Runs `f(arg)` on a worker thread: the same call as
    /// [`ProcessPoolExecutor::apply`](crate::ProcessPoolExecutor::apply), so code that uses
    /// `apply` and `map` with plain functions switches between threads and processes by
    /// changing one line (Python's `Pool.apply_async`).
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit), with `(f, arg)` handed back.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// fn double(x: i32) -> i32 { x * 2 }
    /// let pool = ThreadPoolExecutor::new();
    /// assert_eq!(pool.apply(double, 21)?.result()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> crate::executor::FnSubmit<A, R>
    where
        A: Send + 'static,
        R: Send + 'static,
    {
        // A `Call` job, not a closure, so that a refused task gives back `f` and `arg`.
        self.call(f, arg)
    }

    /// `f(arg)` as a task that a refusal hands back as `(f, arg)`.
    pub(crate) fn call<F, A, R>(&self, f: F, arg: A) -> Result<Future<R>, SubmitError<(F, A)>>
    where
        F: FnOnce(A) -> R + Send + 'static,
        A: Send + 'static,
        R: Send + 'static,
    {
        self.call_with(f, arg, None)
    }

    /// `f(arg)` with an optional time limit of its own.
    pub(crate) fn call_with<F, A, R>(
        &self,
        f: F,
        arg: A,
        limit: Option<Duration>,
    ) -> Result<Future<R>, SubmitError<(F, A)>>
    where
        F: FnOnce(A) -> R + Send + 'static,
        A: Send + 'static,
        R: Send + 'static,
    {
        self.shared
            .submit(Call { f, arg }, limit)
            .map_err(|e| e.map_task(|c| (c.f, c.arg)))
    }

    /// Stops accepting tasks. With `wait`, blocks until every queued task has run and every
    /// worker has exited. With `cancel_futures`, first cancels the tasks that have not
    /// started. Calling it again is harmless. Python: `shutdown(wait, cancel_futures=...)`.
    ///
    /// Called from one of this pool's own workers, `wait` waits for all the others.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::builder().max_workers(1).build()?;
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let (started_tx, started) = std::sync::mpsc::channel();
    /// let blocker = pool.submit(move || { started_tx.send(()).unwrap(); rx.recv().unwrap() })?;
    /// started.recv()?; // the only worker is busy now
    /// let queued = pool.submit(|| 1)?;
    /// pool.shutdown_with(false, true); // cancel what has not started
    /// assert!(queued.cancelled());
    /// tx.send(()).unwrap();
    /// blocker.result()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown_with(&self, wait: bool, cancel_futures: bool) {
        self.shared.shutdown(wait, cancel_futures);
    }

    /// Stops accepting tasks and waits for the queued ones: `shutdown(wait=True)`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let fut = pool.submit(|| 1)?;
    /// pool.shutdown();
    /// assert!(fut.done()); // it ran before shutdown returned
    /// assert!(pool.submit(|| 2).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(&self) {
        self.shutdown_with(true, false);
    }

    /// The most threads this pool runs at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::builder().max_workers(3).build()?;
    /// assert_eq!(pool.max_workers(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_workers(&self) -> usize {
        self.shared.config.max_workers
    }

    /// Tasks submitted that no worker has taken yet. A task cancelled while queued leaves
    /// this count when a worker (or `shutdown`) discards it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// pool.submit(|| ())?.result()?;
    /// assert_eq!(pool.queued(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queued(&self) -> usize {
        self.shared.registry.queued()
    }

    /// Tasks running now.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let (started_tx, started) = std::sync::mpsc::channel();
    /// let fut = pool.submit(move || { started_tx.send(()).unwrap(); rx.recv().unwrap() })?;
    /// started.recv()?;
    /// assert_eq!(pool.running(), 1);
    /// tx.send(())?;
    /// fut.result()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn running(&self) -> usize {
        let (started, completed) = self.shared.counts();
        started.saturating_sub(completed)
    }

    /// Tasks that have run to the end, with a value or a panic.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// pool.submit(|| ())?.result()?;
    /// pool.shutdown();
    /// assert_eq!(pool.completed(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn completed(&self) -> usize {
        self.shared.counts().1
    }

    /// Worker threads alive now (they start lazily and may retire when idle).
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// assert_eq!(pool.threads(), 0); // none until there is work
    /// pool.submit(|| ())?.result()?;
    /// assert_eq!(pool.threads(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn threads(&self) -> usize {
        self.shared.registry.threads()
    }

    /// Returns `true` once an initializer has failed: every queued task failed with
    /// [`TaskError::BrokenExecutor`](crate::TaskError::BrokenExecutor) and later submits are refused.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::builder()
    ///     .try_initializer(|| Err::<(), _>("no database"))
    ///     .build()?;
    /// let fut = pool.submit(|| 1)?;
    /// assert!(fut.result().is_err());
    /// assert!(pool.is_broken());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_broken(&self) -> bool {
        self.shared.registry.is_broken()
    }
}

impl Default for ThreadPoolExecutor {
    fn default() -> Self {
        ThreadPoolExecutor::new()
    }
}

impl Drop for ThreadPoolExecutor {
    /// Shuts down and waits for the queued tasks, like the end of a Python `with` block.
    fn drop(&mut self) {
        self.shared.shutdown(true, false);
    }
}

impl fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolExecutor")
            .field("max_workers", &self.max_workers())
            .field("threads", &self.threads())
            .field("queued", &self.queued())
            .field("running", &self.running())
            .field("completed", &self.completed())
            .finish()
    }
}

/// Generic code over threads, processes and Redis (see [`Executor`](crate::executor::Executor)).
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
impl crate::executor::Executor for ThreadPoolExecutor {
    fn apply_with<F, A, R>(
        &self,
        f: F,
        arg: A,
        opts: TaskOptions,
    ) -> Result<Future<R>, SubmitError<(F, A)>>
    where
        F: crate::executor::PlainFn<A, R>,
        A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
        R: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        crate::executor::require_plain::<F>();
        if let Some(option) = opts.queue_only() {
            return Err(SubmitError::Unsupported {
                task: (f, arg),
                option,
            });
        }
        self.call_with(f, arg, opts.time_limit)
    }

    fn map_fn<'a, F, A, R, I>(&self, f: F, items: I) -> Map<'a, R>
    where
        F: crate::executor::PlainFn<A, R>,
        A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
        R: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        crate::executor::require_plain::<F>();
        self.map(f, items)
    }

    fn map_unordered_fn<'a, F, A, R, I>(&self, f: F, items: I) -> MapUnordered<'a, R>
    where
        F: crate::executor::PlainFn<A, R>,
        A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
        R: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        crate::executor::require_plain::<F>();
        self.map_unordered(f, items)
    }

    fn shutdown(&self) {
        ThreadPoolExecutor::shutdown(self);
    }
}
