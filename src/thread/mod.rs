//! [`ThreadPoolExecutor`]: Python's `ThreadPoolExecutor`, returning [`Future`] handles.
//!
//! # How tasks reach threads
//!
//! One unbounded crossbeam channel carries `Some(task)` messages, and one `None` (stop)
//! message per worker at shutdown. A task is a single allocation holding its closure and its
//! result slot ([`Task`]); the channel slot holds a pointer to it.
//!
//! Threads start lazily. One signed counter, `surplus`, is idle workers minus queued tasks:
//! a submit subtracts one, a worker adds one when it becomes idle (at start, and after each
//! task just before it publishes the result, so the caller's next submit finds it idle), and
//! receiving a task changes nothing (one fewer idle worker, one fewer queued task). So:
//!
//! 1. A submit that takes `surplus` below zero has no idle worker to count on and starts a
//!    thread, unless `max_workers` are running. Idle workers are reused first.
//! 2. A worker whose keep-alive runs out retires by subtracting one; if that takes
//!    `surplus` below zero, a task needs it after all and it stays. Both sides use one
//!    read-modify-write on the same atomic, and the retiring worker stops being counted
//!    in the same critical section (under `control`, where a submit checks the count
//!    before starting a thread), so no task is ever left without a worker.
//! 3. After pushing, a submit re-reads the pool's status; if shutdown (or breakage) raced
//!    with it, it takes its task back by cancelling it, and returns the closure in the error.
//!    A task that a worker claimed first simply runs. Either way nothing is lost.

mod builder;
mod scope;
mod slice;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use crossbeam_utils::CachePadded;
use parking_lot::{Condvar, Mutex, MutexGuard};

pub use self::builder::ThreadPoolBuilder;
pub use self::scope::{Scope, ScopedTask};
use crate::context::{RunCtx, WorkerCounters, WorkerGuard};
use crate::error::{SubmitError, TaskError};
use crate::future::{Call, Future, Job, Runnable, Task};
use crate::map::{run_chunk, Map, MapUnordered, Source};

const RUNNING: u8 = 0;
const SHUTDOWN: u8 = 1;
const BROKEN: u8 = 2;

/// `None` asks one worker to exit.
type Message = Option<Arc<dyn Runnable>>;

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
    tx: Sender<Message>,
    rx: Receiver<Message>,
    /// Idle workers minus queued tasks (see the module docs).
    surplus: CachePadded<AtomicIsize>,
    /// Set once `max_workers` threads run and none can retire (no keep-alive): no submit
    /// needs to start a thread any more, so `surplus` is no longer kept.
    saturated: AtomicBool,
    /// Stop messages sent and not yet received, so `queued()` does not count them.
    stops: AtomicUsize,
    status: AtomicU8,
    control: Mutex<Control>,
    /// Signalled when a worker exits.
    exited: Condvar,
    config: builder::Config,
}

struct Control {
    /// Each live worker's counters; a retiring worker folds its own into `retired`.
    workers: Vec<Arc<WorkerCounters>>,
    retired: (usize, usize),
    threads: usize,
    spawned: usize,
    shutdown: bool,
    broken: Option<Arc<str>>,
    /// Every worker thread not yet joined; retired ones are joined at the next spawn or at
    /// shutdown, so that `shutdown()` returns only after their thread-locals are destroyed.
    handles: Vec<JoinHandle<()>>,
    /// Handles taken out by a `shutdown(wait)` and being joined right now.
    joining: usize,
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

    pub(crate) fn from_config(config: builder::Config) -> ThreadPoolExecutor {
        let (tx, rx) = crossbeam_channel::unbounded();
        ThreadPoolExecutor {
            shared: Arc::new(Shared {
                // ORDERING: a unique number, nothing published with it: Relaxed.
                id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
                tx,
                rx,
                surplus: CachePadded::new(AtomicIsize::new(0)),
                saturated: AtomicBool::new(false),
                stops: AtomicUsize::new(0),
                status: AtomicU8::new(RUNNING),
                control: Mutex::new(Control {
                    workers: Vec::new(),
                    retired: (0, 0),
                    threads: 0,
                    spawned: 0,
                    shutdown: false,
                    broken: None,
                    handles: Vec::new(),
                    joining: 0,
                }),
                exited: Condvar::new(),
                config,
            }),
        }
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
        // ORDERING: a statistic, a snapshot whatever the ordering; Acquire pairs with the
        // AcqRel updates for a figure no older than the last stop seen.
        let stops = self.shared.stops.load(Ordering::Acquire);
        self.shared.rx.len().saturating_sub(stops)
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
        self.shared.control.lock().threads
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
        // ORDERING: pairs with the SeqCst store in `break_pool` (a Release at least): who sees
        // BROKEN sees the reason set before it under `control`.
        self.shared.status.load(Ordering::Acquire) == BROKEN
    }
}

impl Shared {
    /// Tasks started and completed, summed over the workers, live and retired.
    fn counts(&self) -> (usize, usize) {
        let control = self.control.lock();
        // Completed first: a task moving along is then never counted completed but not started.
        // ORDERING: Acquire pairs with the workers' Release increments (`context::WorkerCounters::bump`), so
        // the `started` read after a `completed` is at least as new as it.
        control.workers.iter().fold(control.retired, |(s, c), w| {
            let done = w.completed.load(Ordering::Acquire);
            (s + w.started.load(Ordering::Acquire), c + done)
        })
    }

    /// A worker is idle (rule 1's other half), unless `surplus` is no longer kept.
    fn mark_idle(&self) {
        // ORDERING: `saturated` only ever goes from false to true, once, under `control`; a
        // stale false costs an update of a count that is no longer read, so Relaxed. Rules 1
        // and 2 rest on every change of `surplus` being a read-modify-write of this one
        // atomic (one modification order), and on this mark happening before the task's
        // result is published (Release there, Acquire in the caller who then submits again),
        // so the caller's decrement comes after it. Relaxed would do for that; AcqRel costs
        // the same locked instruction on x86 and spares the reader that argument.
        if !self.saturated.load(Ordering::Relaxed) {
            self.surplus.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn send_stop(&self) {
        // ORDERING: `stops` only feeds `queued()`; counted before the message is sent, so
        // the statistic never counts a stop message as a queued task.
        self.stops.fetch_add(1, Ordering::AcqRel);
        let _ = self.tx.send(None);
    }

    fn refusal<F>(&self, task: F) -> SubmitError<F> {
        let control = self.control.lock();
        match &control.broken {
            Some(reason) => SubmitError::Broken {
                task,
                reason: reason.clone(),
            },
            None => SubmitError::Shutdown(task),
        }
    }

    fn submit<J, T>(self: &Arc<Self>, func: J) -> Result<Future<T>, SubmitError<J>>
    where
        J: Job<T>,
        T: Send + 'static,
    {
        // ORDERING: a fast refusal only; the check that decides is the SeqCst re-read below.
        if self.status.load(Ordering::Acquire) != RUNNING {
            return Err(self.refusal(func));
        }
        let task = Task::new(func, self.id);
        // The channel is never disconnected: `Shared` owns both ends.
        let _ = self.tx.send(Some(task.clone()));
        // Rule 3: re-read the status after the push; a concurrent shutdown's stop messages
        // may be ahead of our task.
        // ORDERING: SeqCst, with the SeqCst stores of `shutdown` and `break_pool`: if this
        // read does not see their store, it comes first in the single total order, so our
        // push (before this read) precedes their stop messages (sent after the store) in the
        // channel, and a worker takes our task before it stops.
        if self.status.load(Ordering::SeqCst) != RUNNING {
            if let Some(func) = task.reclaim() {
                return Err(self.refusal(func));
            }
        } else if !self.saturated.load(Ordering::Relaxed) // ORDERING: as in `mark_idle`
            && self.surplus.fetch_sub(1, Ordering::AcqRel) < 1
        {
            // Rule 1: no idle worker to count on.
            if let Err(error) = self.spawn_worker() {
                if self.control.lock().threads == 0 {
                    if let Some(func) = task.reclaim() {
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

    /// Starts a worker unless `max_workers` are running or the pool is broken.
    ///
    /// A submit whose task was queued before a racing shutdown still needs a worker (rule 3
    /// lets its task run), so this starts one after shutdown too, and queues a stop message
    /// for it behind that task.
    fn spawn_worker(self: &Arc<Self>) -> std::io::Result<()> {
        let mut control = self.control.lock();
        if control.broken.is_some() || control.threads >= self.config.max_workers {
            return Ok(());
        }
        let name = format!(
            "{}_{}",
            self.config.thread_name_prefix(self.id),
            control.spawned
        );
        let mut builder = std::thread::Builder::new().name(name);
        if let Some(size) = self.config.stack_size {
            builder = builder.stack_size(size);
        }
        let shared = self.clone();
        let counters = Arc::new(WorkerCounters::default());
        let mine = counters.clone();
        let handle = builder.spawn(move || shared.work(mine))?;
        // Retired threads have returned; join them so that they do not pile up.
        let (done, live): (Vec<_>, Vec<_>) = std::mem::take(&mut control.handles)
            .into_iter()
            .partition(JoinHandle::is_finished);
        control.handles = live;
        control.handles.push(handle);
        control.workers.push(counters);
        control.threads += 1;
        control.spawned += 1;
        if control.threads == self.config.max_workers && self.config.keep_alive.is_none() {
            // ORDERING: set once, under `control`; every reader tolerates a stale false (see
            // `mark_idle`), so Relaxed.
            self.saturated.store(true, Ordering::Relaxed);
        }
        if control.shutdown {
            self.send_stop();
        }
        drop(control);
        for handle in done {
            let _ = handle.join();
        }
        Ok(())
    }

    /// The worker thread's body.
    fn work(self: Arc<Self>, counters: Arc<WorkerCounters>) {
        let _worker = WorkerGuard::enter(self.id, counters.clone());
        if let Some(init) = &self.config.initializer {
            if let Err(reason) = init() {
                log::error!(target: "concurrent_futures", "thread pool initializer failed: {reason}");
                self.break_pool(reason);
                self.exit(&counters);
                return;
            }
        }
        let mark_idle = || self.mark_idle();
        let ctx = RunCtx {
            counters: &counters,
            mark_idle: Some(&mark_idle),
        };
        self.mark_idle();
        loop {
            let message = match self.config.keep_alive {
                None => self.rx.recv().expect("the pool owns both channel ends"),
                Some(keep_alive) => match self.rx.recv_timeout(keep_alive) {
                    Ok(message) => message,
                    Err(RecvTimeoutError::Timeout) => {
                        // Rule 2: retire unless that leaves a queued task without a worker.
                        // Decided under the lock that `spawn_worker` counts threads under,
                        // so a submit that finds no idle worker never finds this one still
                        // counted either.
                        let control = self.control.lock();
                        // ORDERING: rule 2 needs only that this decrement and a submit's
                        // are read-modify-writes of the one atomic, so that exactly one of
                        // them sees the other; the lock orders it against `spawn_worker`.
                        if self.surplus.fetch_sub(1, Ordering::AcqRel) < 1 {
                            self.surplus.fetch_add(1, Ordering::AcqRel);
                            continue;
                        }
                        self.exit_locked(&counters, control);
                        return;
                    }
                    Err(RecvTimeoutError::Disconnected) => unreachable!("the pool owns both ends"),
                },
            };
            match message {
                // A task that ran here already marked the worker idle, before it published
                // the result.
                Some(task) => {
                    if !task.run(&ctx) {
                        self.mark_idle();
                    }
                }
                None => {
                    // ORDERING: as in `send_stop` and `mark_idle`: a stopping worker is no
                    // longer idle, and the statistic no longer counts its message.
                    self.stops.fetch_sub(1, Ordering::AcqRel);
                    if !self.saturated.load(Ordering::Relaxed) {
                        self.surplus.fetch_sub(1, Ordering::AcqRel);
                    }
                    break;
                }
            }
        }
        self.exit(&counters);
    }

    fn exit(&self, counters: &Arc<WorkerCounters>) {
        self.exit_locked(counters, self.control.lock());
    }

    fn exit_locked(&self, counters: &Arc<WorkerCounters>, mut control: MutexGuard<'_, Control>) {
        // ORDERING: runs on the worker thread that made the increments: program order is
        // enough, and Acquire is more than it needs.
        control.retired.0 += counters.started.load(Ordering::Acquire);
        control.retired.1 += counters.completed.load(Ordering::Acquire);
        control.workers.retain(|w| !Arc::ptr_eq(w, counters));
        control.threads -= 1;
        drop(control);
        self.exited.notify_all();
    }

    /// An initializer failed: refuse new tasks and fail every queued one (Python's
    /// `BrokenThreadPool`).
    fn break_pool(&self, reason: String) {
        let reason: Arc<str> = Arc::from(reason);
        {
            let mut control = self.control.lock();
            if control.broken.is_none() {
                control.broken = Some(reason.clone());
            }
            // ORDERING: SeqCst, the store side of rule 3 (see `submit`).
            self.status.store(BROKEN, Ordering::SeqCst);
        }
        let mut stops = 0;
        while let Ok(message) = self.rx.try_recv() {
            match message {
                Some(task) => {
                    task.fail(TaskError::BrokenExecutor(reason.clone()));
                }
                None => stops += 1,
            }
        }
        // Put back the stop messages drained with the tasks.
        for _ in 0..stops {
            let _ = self.tx.send(None);
        }
    }

    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let mut control = self.control.lock();
        if !control.shutdown {
            control.shutdown = true;
            if control.broken.is_none() {
                // ORDERING: SeqCst, the store side of rule 3 (see `submit`); the stop
                // messages are sent after it.
                self.status.store(SHUTDOWN, Ordering::SeqCst);
            }
            if cancel_futures {
                self.cancel_queued();
            }
            for _ in 0..control.threads {
                self.send_stop();
            }
        } else if cancel_futures {
            self.cancel_queued();
        }
        if wait {
            let me = usize::from(crate::context::is_worker_of(self.id));
            while control.threads > me {
                self.exited.wait(&mut control);
            }
            // Join the threads (but our own, when a task shuts its own pool down), so their
            // thread-locals are destroyed before we return, as CPython joins its threads.
            let current = std::thread::current().id();
            let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut control.handles)
                .into_iter()
                .partition(|h| h.thread().id() == current);
            control.handles = mine;
            control.joining += others.len();
            drop(control);
            let joined = others.len();
            for handle in others {
                let _ = handle.join();
            }
            let mut control = self.control.lock();
            control.joining -= joined;
            if control.joining == 0 {
                self.exited.notify_all();
            }
            // A concurrent shutdown may be joining the rest.
            while control.joining > 0 {
                self.exited.wait(&mut control);
            }
        }
    }

    /// Cancels every task still in the queue (Python's `cancel_futures=True`).
    fn cancel_queued(&self) {
        let mut stops = 0;
        while let Ok(message) = self.rx.try_recv() {
            match message {
                Some(task) => {
                    task.cancel();
                }
                None => stops += 1,
            }
        }
        // Put back the stop messages drained with the tasks.
        for _ in 0..stops {
            let _ = self.tx.send(None);
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
