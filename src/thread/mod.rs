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
mod scope;
mod slice;
mod watchdog;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use parking_lot::Mutex;

pub use self::builder::ThreadPoolBuilder;
pub use self::scope::{Scope, ScopedTask};
use self::watchdog::Watchdog;
use crate::context::{RunCtx, WorkerCounters, WorkerGuard};
use crate::error::{BuildError, SubmitError, TaskError};
use crate::future::{Call, Future, Job, Runnable, Task};
use crate::map::{Map, MapUnordered, Source, run_chunk};
use crate::registry::{Next, Pool, Pushed, Refusal, Registry};

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
    /// Enforces the time limit, if there is one.
    watchdog: Option<Arc<Watchdog>>,
    config: builder::Config,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The executor and every worker are gone: nothing is left to time.
        if let Some(watchdog) = &self.watchdog {
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
        let watchdog = match config.time_limit {
            None => None,
            Some(limit) => {
                let name = format!("{}-watchdog", config.thread_name_prefix(id));
                let (watchdog, _detached) = Watchdog::start(limit, name)
                    .map_err(|e| BuildError::ThreadStart(e.to_string()))?;
                Some(watchdog)
            }
        };
        Ok(ThreadPoolExecutor {
            shared: Arc::new(Shared {
                id,
                registry: Registry::new("thread", config.max_workers, config.keep_alive, false),
                counters: Mutex::new(Counters {
                    workers: Vec::new(),
                    retired: (0, 0),
                }),
                watchdog,
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
        self.shared.submit(task)
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
        self.shared
            .submit(Call { f, arg })
            .map_err(|e| e.map_task(|c| (c.f, c.arg)))
    }

    /// Applies `f` to every item and yields the results in input order: Python's
    /// `executor.map(fn, iterable)`, lazy and bounded.
    ///
    /// - The input is read lazily: at most [`buffer_size`](Map::buffer_size) tasks are in
    ///   flight (default: twice `max_workers`), so an endless iterator works (Python 3.14's
    ///   `buffersize`). Tasks are submitted from the first `next()` on, so the settings apply
    ///   to all of them (Python submits at the call).
    /// - Items are batched per task by size measured as results come back: cheap items in
    ///   growing chunks, slow ones one per task (Python picks `len / (4 * workers)` for its
    ///   process pool and ignores `chunksize` on threads). [`chunk_size`](Map::chunk_size)
    ///   pins a size.
    /// - Each item is a `Result`: a panic fails that item only, the rest still run
    ///   (CPython's map stops at the first error, python/cpython#108518).
    /// - [`Map::timeout`] sets a deadline measured from this call; when it passes, the tasks
    ///   in flight are cancelled and the iterator yields [`MapError::Timeout`](crate::MapError::Timeout) once.
    /// - Dropping the iterator cancels the tasks that have not started.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    /// use std::time::Duration;
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let squares: Vec<u64> = pool
    ///     .map(|x: u64| x * x, 0..)            // an endless input is fine
    ///     .timeout(Duration::from_secs(60))
    ///     .take(5)
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(squares, [0, 1, 4, 9, 16]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map<'a, F, I, T>(&self, f: F, items: I) -> Map<'a, T>
    where
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        I: IntoIterator,
        I::IntoIter: Send + 'a,
        I::Item: Send + 'static,
        T: Send + 'static,
    {
        Map::new(self.source(f, items), 2 * self.max_workers())
    }

    /// Like [`map`](Self::map), but yields results as they finish, not in input order:
    /// Python's `Pool.imap_unordered`. The same buffer and timeout rules apply.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let mut lens: Vec<usize> = pool
    ///     .map_unordered(|s: &str| s.len(), ["a", "bbb", "cc"])
    ///     .collect::<Result<_, _>>()?;
    /// lens.sort();
    /// assert_eq!(lens, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_unordered<'a, F, I, T>(&self, f: F, items: I) -> MapUnordered<'a, T>
    where
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        I: IntoIterator,
        I::IntoIter: Send + 'a,
        I::Item: Send + 'static,
        T: Send + 'static,
    {
        MapUnordered::new(self.source(f, items), 2 * self.max_workers())
    }

    /// The input side of a map: pulls the next item and submits it.
    fn source<'a, F, I, T>(&self, f: F, items: I) -> Source<'a, T>
    where
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        I: IntoIterator,
        I::IntoIter: Send + 'a,
        I::Item: Send + 'static,
        T: Send + 'static,
    {
        let shared = self.shared.clone();
        let f = Arc::new(f);
        crate::map::source(items.into_iter(), move |batch| {
            let f = f.clone();
            shared
                .submit(move || run_chunk(&*f, batch))
                .map_err(|e| Arc::from(e.to_string()))
        })
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
    /// [`TaskError::BrokenExecutor`] and later submits are refused.
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

/// A refused task's closure, out of its span's wrapper.
#[cfg(any(feature = "tracing", feature = "metrics"))]
fn untraced<J>(job: crate::trace::Traced<J>) -> J {
    job.into_inner()
}

#[cfg(not(any(feature = "tracing", feature = "metrics")))]
fn untraced<J>(job: J) -> J {
    job
}

impl Pool for Shared {
    type Message = Arc<dyn Runnable>;

    fn registry(&self) -> &Registry<Arc<dyn Runnable>> {
        &self.registry
    }

    fn spawn_thread(self: &Arc<Self>, n: usize) -> std::io::Result<JoinHandle<()>> {
        let name = format!("{}_{n}", self.config.thread_name_prefix(self.id));
        let mut builder = std::thread::Builder::new().name(name);
        if let Some(size) = self.config.stack_size {
            builder = builder.stack_size(size);
        }
        let shared = self.clone();
        let counters = Arc::new(WorkerCounters::default());
        // Counted before it can run anything, so that no task it runs is ever missing from
        // the totals.
        self.counters.lock().workers.push(counters.clone());
        let mine = counters.clone();
        builder.spawn(move || shared.work(mine)).inspect_err(|_| {
            self.counters
                .lock()
                .workers
                .retain(|w| !Arc::ptr_eq(w, &counters));
        })
    }
}

impl Shared {
    /// Tasks started and completed, summed over the workers, live and retired.
    fn counts(&self) -> (usize, usize) {
        let counters = self.counters.lock();
        // Completed first: a task moving along is then never counted completed but not started.
        // ORDERING: Acquire pairs with the workers' Release increments
        // (`context::WorkerCounters::bump`), so the `started` read after a `completed` is at
        // least as new as it.
        counters.workers.iter().fold(counters.retired, |(s, c), w| {
            let done = w.completed.load(Ordering::Acquire);
            (s + w.started.load(Ordering::Acquire), c + done)
        })
    }

    /// A leaving worker's counts join the totals, in one step with its leaving the list.
    fn fold(&self, mine: &Arc<WorkerCounters>) {
        let mut counters = self.counters.lock();
        // ORDERING: runs on the worker thread that made the increments: program order is
        // enough, and Acquire is more than it needs.
        counters.retired.0 += mine.started.load(Ordering::Acquire);
        counters.retired.1 += mine.completed.load(Ordering::Acquire);
        counters.workers.retain(|w| !Arc::ptr_eq(w, mine));
    }

    fn refusal<F>(&self, refusal: Refusal, task: F) -> SubmitError<F> {
        match refusal {
            Refusal::Shutdown => SubmitError::Shutdown(task),
            Refusal::Broken(reason) => SubmitError::Broken { task, reason },
        }
    }

    fn submit<J, T>(self: &Arc<Self>, func: J) -> Result<Future<T>, SubmitError<J>>
    where
        J: Job<T>,
        T: Send + 'static,
    {
        #[cfg(any(feature = "tracing", feature = "metrics"))]
        let func = crate::trace::Traced::new(func, "thread");
        let task = Task::new(func, self.id);
        match Registry::push(self, task.clone()) {
            Pushed::Queued => {}
            // Refused, or a shutdown raced with the push (the registry's rule 3): the closure
            // goes back to the caller unless a worker took the task first, in which case it
            // runs.
            Pushed::Refused(refusal, _) | Pushed::Raced(refusal) => {
                if let Some(func) = task.reclaim().map(untraced) {
                    return Err(self.refusal(refusal, func));
                }
            }
            Pushed::NoWorker { error, alone } => {
                if alone {
                    if let Some(func) = task.reclaim().map(untraced) {
                        return Err(SubmitError::Spawn {
                            task: func,
                            error: Arc::new(error),
                        });
                    }
                }
                log::warn!(target: "concurrent_futures", "could not start a worker thread: {error}");
            }
        }
        Ok(Future::from_task(task))
    }

    /// The worker thread's body.
    fn work(self: Arc<Self>, counters: Arc<WorkerCounters>) {
        let _worker = WorkerGuard::enter(self.id, counters.clone());
        if let Some(init) = &self.config.initializer {
            if let Err(reason) = init() {
                log::error!(target: "concurrent_futures", "thread pool initializer failed: {reason}");
                self.break_pool(reason);
                self.registry.exit(|| self.fold(&counters));
                return;
            }
        }
        let mark_idle = || self.registry.mark_idle();
        let ctx = RunCtx {
            counters: &counters,
            mark_idle: Some(&mark_idle),
        };
        let timed = self.watchdog.as_ref().map(|w| (w, w.enter()));
        let stopped = loop {
            match self.registry.next(|| self.fold(&counters)) {
                // A task that ran here already marked the worker idle, before it published
                // the result.
                Next::Message(task) => {
                    if let Some((watchdog, slot)) = timed {
                        watchdog.begin(slot, &task);
                    }
                    let ran = task.run(&ctx);
                    if let Some((watchdog, slot)) = timed {
                        watchdog.end(slot);
                    }
                    if !ran {
                        self.registry.mark_idle();
                    }
                }
                Next::Stop => break true,
                // Already uncounted, its counts folded.
                Next::Retire => break false,
            }
        };
        if let Some((watchdog, slot)) = timed {
            watchdog.leave(slot);
        }
        if stopped {
            self.registry.exit(|| self.fold(&counters));
        }
    }

    /// An initializer failed: refuse new tasks and fail every queued one (Python's
    /// `BrokenThreadPool`).
    fn break_pool(&self, reason: String) {
        let reason: Arc<str> = Arc::from(reason);
        for task in self.registry.break_with(&reason) {
            task.fail(TaskError::BrokenExecutor(reason.clone()));
        }
    }

    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        // Python's `cancel_futures=True`: what is still queued is cancelled.
        for task in self.registry.shutdown(cancel_futures) {
            task.cancel();
        }
        if wait {
            self.registry.join();
        }
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
    fn apply<F, A, R>(&self, f: F, arg: A) -> Result<Future<R>, SubmitError<(F, A)>>
    where
        F: crate::executor::PlainFn<A, R>,
        A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
        R: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        crate::executor::require_plain::<F>();
        self.call(f, arg)
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
