//! [`ProcessPoolExecutor`]: the same API over worker processes, with crash isolation.
//!
//! # Who owns what
//!
//! ```text
//! submit ──Job──▶ jobs channel ──▶ manager thread i ──TASK frame──▶ worker process i
//!                                        ▲  owns the Child and the socket  │
//!   Future ◀── Promise completed ◀────────┴──── DONE / PANICKED / BROKEN ◀─┘
//! ```
//!
//! One manager thread per worker slot takes the next job, so it always knows which task its
//! worker holds. A worker is a re-execution of this program that [`init`] turns into a task
//! server; it connects back over its own Unix socket (its stdout and stderr stay the
//! parent's) and proves in a HELLO frame that it runs the same build. Frames are described
//! in `frame.rs`, function shipping in `shipping.rs`.
//!
//! # Worker life cycle
//!
//! ```text
//! (none) --job arrives--> STARTING --HELLO ok--> READY --TASK--> BUSY --DONE--> READY
//! STARTING --exit / bad HELLO / timeout--> (none)      start failures in a row >= limit: BROKEN pool
//! BUSY --EOF (crash, abort, exit, kill)--> (none)      the task fails with WorkerDied(how)
//! BUSY --time limit--> SIGTERM, grace, SIGKILL --> (none)   the task fails with TimedOut
//! READY --max_tasks_per_child / idle timeout / shutdown--> STOP frame --> exited
//! ```
//!
//! A dead worker fails only its own task; the manager starts a new one for the next job.

mod frame;
mod shipping;
mod worker;

use std::fmt;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use self::frame::FrameError;
use self::shipping::Trampoline;
pub use self::worker::init;
use crate::error::{BuildError, SubmitError, TaskError};
use crate::executor::FnSubmit;
use crate::future::Promise;
use crate::map::{Chunk, Map, MapUnordered, Source};

/// The largest frame either side accepts unless the builder says otherwise: 64 MiB.
pub(crate) const DEFAULT_FRAME_LIMIT: usize = 64 << 20;

static NEXT_POOL: AtomicU32 = AtomicU32::new(1);

/// A pool of worker processes that runs plain functions over serializable data and hands back
/// a [`Future`](crate::Future) for each: Python's `ProcessPoolExecutor` and `multiprocessing.Pool`.
///
/// In Rust, threads already run CPU work in parallel; processes add *isolation*. A task that
/// segfaults, aborts, exits, leaks or hangs fails alone: its worker is replaced and the pool
/// keeps serving (CPython marks the whole pool broken). Tasks are `fn(A) -> R` (functions or
/// non-capturing closures) with `serde` arguments and results; nothing is registered by hand.
///
/// The program must call [`init`] first thing in `main` (test crates: see
/// [`worker_test!`](crate::worker_test)).
///
/// # Examples
///
/// ```no_run
/// use concurrent_futures::{as_completed, ProcessPoolExecutor};
///
/// fn digits(n: u64) -> usize {
///     n.to_string().len()
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     concurrent_futures::init();
///     let pool = ProcessPoolExecutor::builder().max_workers(4).build()?;
///     let futs: Vec<_> = (1..=3).map(|n| pool.submit(digits, 10u64.pow(n)).unwrap()).collect();
///     for fut in as_completed(futs) {
///         println!("{}", fut.result()?);
///     }
///     let all: Vec<usize> = pool.map(digits, 0..1000).chunk_size(100).collect::<Result<_, _>>()?;
///     assert_eq!(all.len(), 1000);
///     Ok(())
/// }
/// ```
pub struct ProcessPoolExecutor {
    shared: Arc<Shared>,
}

struct Shared {
    id: u32,
    jobs_tx: Sender<Option<Job>>,
    jobs_rx: Receiver<Option<Job>>,
    config: Config,
    state: Mutex<PoolState>,
    spawns: AtomicUsize,
}

struct PoolState {
    shutdown: bool,
    broken: Option<Arc<str>>,
    managers: Vec<JoinHandle<()>>,
    /// The live worker of each slot, so `terminate` can kill it.
    children: Vec<Option<Arc<Mutex<Child>>>>,
}

#[derive(Clone)]
struct Config {
    max_workers: usize,
    max_tasks_per_child: Option<usize>,
    task_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    frame_limit: usize,
    start_timeout: Duration,
    max_start_failures: u32,
    initializer: Option<fn()>,
    kill_grace: Duration,
}

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
///     .task_timeout(Duration::from_secs(60))
///     .idle_timeout(Duration::from_secs(30))
///     .build()?;
/// # Ok::<(), concurrent_futures::BuildError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct ProcessPoolBuilder {
    config: Config,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("max_workers", &self.max_workers)
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field("task_timeout", &self.task_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("frame_limit", &self.frame_limit)
            .field("initializer", &self.initializer.is_some())
            .finish_non_exhaustive()
    }
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
                task_timeout: None,
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
    /// See [`ProcessPoolBuilder`].
    pub fn max_workers(mut self, n: usize) -> Self {
        self.config.max_workers = n;
        self
    }

    /// Replaces a worker after it has run this many tasks (Python's `max_tasks_per_child`),
    /// to bound what a leaking library can hold on to.
    ///
    /// # Examples
    ///
    /// See [`ProcessPoolBuilder`].
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.config.max_tasks_per_child = Some(n.max(1));
        self
    }

    /// The default time limit of every task; a task over it fails with
    /// [`TaskError::TimedOut`] and its worker is stopped (SIGTERM, then SIGKILL after the
    /// [`kill_grace`](Self::kill_grace)) and replaced. Per task:
    /// [`ProcessPoolExecutor::submit_with_timeout`].
    ///
    /// # Examples
    ///
    /// See [`ProcessPoolBuilder`].
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.config.task_timeout = Some(limit);
        self
    }

    /// How long a worker past its time limit gets between SIGTERM and SIGKILL (default 1 s).
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

    /// Lets a worker exit after waiting this long for work; a new one starts when work comes.
    ///
    /// # Examples
    ///
    /// See [`ProcessPoolBuilder`].
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
    /// 64 MiB); a larger one fails its task with [`TaskError::Transport`].
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

    /// Starts the pool and its first worker, to check that workers can start at all.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroWorkers`]; [`BuildError::NotInitialized`] if [`init`] has not run;
    /// [`BuildError::WorkerStart`] if the first worker cannot start or runs a different
    /// build (the message says how, with a hint for test binaries).
    ///
    /// # Examples
    ///
    /// See [`ProcessPoolBuilder`].
    pub fn build(self) -> Result<ProcessPoolExecutor, BuildError> {
        if self.config.max_workers == 0 {
            return Err(BuildError::ZeroWorkers);
        }
        if !worker::initialized() || std::env::var_os(worker::WORKER_ENV).is_some() {
            return Err(BuildError::NotInitialized);
        }
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            id: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
            jobs_tx,
            jobs_rx,
            config: self.config,
            state: Mutex::new(PoolState {
                shutdown: false,
                broken: None,
                managers: Vec::new(),
                children: Vec::new(),
            }),
            spawns: AtomicUsize::new(0),
        });
        let first = shared.start_worker().map_err(BuildError::WorkerStart)?;
        let mut first = Some(first);
        let mut state = shared.state.lock();
        state.children = vec![None; shared.config.max_workers];
        for slot in 0..shared.config.max_workers {
            let s = shared.clone();
            let initial = first.take();
            if let Some(w) = &initial {
                state.children[slot] = Some(w.child.clone());
            }
            let handle = std::thread::Builder::new()
                .name(format!("ProcessPoolExecutor-{}_{slot}", shared.id))
                .spawn(move || s.manage(slot, initial))
                .map_err(|e| {
                    BuildError::WorkerStart(format!("cannot start a manager thread: {e}"))
                })?;
            state.managers.push(handle);
        }
        drop(state);
        Ok(ProcessPoolExecutor { shared })
    }
}

/// The typed end of a job: decodes the worker's answer into the caller's future.
trait Sink: Send {
    /// Marks the future running; false if it was cancelled meanwhile.
    fn start(&self) -> bool;
    fn cancel(&self) -> bool;
    fn fail(self: Box<Self>, err: TaskError);
    fn done(self: Box<Self>, bytes: &[u8]);
}

/// A promise with the way to decode the worker's answer into its value.
struct PromiseSink<T: Send + 'static> {
    promise: Promise<T>,
    decode: fn(&[u8]) -> Result<T, TaskError>,
}

impl<T: Send + 'static> Sink for PromiseSink<T> {
    fn start(&self) -> bool {
        self.promise.set_running_or_notify_cancel()
    }
    fn cancel(&self) -> bool {
        self.promise.cancel()
    }
    fn fail(self: Box<Self>, err: TaskError) {
        let _ = self.promise.set_error(err);
    }
    fn done(self: Box<Self>, bytes: &[u8]) {
        let _ = match (self.decode)(bytes) {
            Ok(value) => self.promise.set_result(value).map_err(drop),
            Err(err) => self.promise.set_error(err).map_err(drop),
        };
    }
}

/// One task's result.
fn decode_one<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, TaskError> {
    postcard::from_bytes(bytes)
        .map_err(|e| TaskError::Transport(format!("cannot decode the result: {e}").into()))
}

/// A chunk's results, each item's panic message becoming that item's error.
fn decode_chunk<R: DeserializeOwned>(bytes: &[u8]) -> Result<Chunk<R>, TaskError> {
    let items: Vec<Result<R, String>> = postcard::from_bytes(bytes)
        .map_err(|e| TaskError::Transport(format!("cannot decode the results: {e}").into()))?;
    Ok(items
        .into_iter()
        .map(|r| r.map_err(|m| TaskError::Panicked(m.into())))
        .collect())
}

struct Job {
    trampoline: i64,
    function: i64,
    args: Vec<u8>,
    timeout: Option<Duration>,
    sink: Box<dyn Sink>,
}

/// A live worker process and its socket.
struct Worker {
    child: Arc<Mutex<Child>>,
    socket: UnixStream,
    tasks: usize,
}

impl ProcessPoolExecutor {
    /// A pool with one worker per CPU.
    ///
    /// # Errors
    ///
    /// As [`ProcessPoolBuilder::build`].
    ///
    /// # Examples
    ///
    /// See [`init`].
    pub fn new() -> Result<ProcessPoolExecutor, BuildError> {
        ProcessPoolBuilder::new().build()
    }

    /// A builder for the number of workers, time limits and worker recycling.
    ///
    /// # Examples
    ///
    /// See [`ProcessPoolBuilder`].
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder::new()
    }

    /// Runs `f(arg)` in a worker process and returns a [`Future`](crate::Future) for the result: Python's
    /// `executor.submit(fn, arg)`. Use a tuple or struct for several arguments.
    ///
    /// A panic in `f` is [`TaskError::Panicked`] (the worker lives on); a worker that dies
    /// fails this task with [`TaskError::WorkerDied`] and is replaced.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Shutdown`] or [`SubmitError::Broken`], with `(f, arg)` handed back.
    ///
    /// # Examples
    ///
    /// See [`ProcessPoolExecutor`].
    pub fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> FnSubmit<A, R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_inner(f, arg, self.shared.config.task_timeout)
    }

    /// Like [`submit`](Self::submit) with a time limit for this task: past it the worker is
    /// killed and replaced, and the task fails with [`TaskError::TimedOut`].
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::{ProcessPoolExecutor, TaskError};
    /// # use std::time::Duration;
    /// fn hang(_: ()) {
    ///     loop { std::thread::sleep(Duration::from_secs(1)) }
    /// }
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::new()?;
    /// let fut = pool.submit_with_timeout(hang, (), Duration::from_millis(100))?;
    /// assert_eq!(fut.result(), Err(TaskError::TimedOut));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit_with_timeout<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
        limit: Duration,
    ) -> FnSubmit<A, R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_inner(f, arg, Some(limit))
    }

    fn submit_inner<A, R>(&self, f: fn(A) -> R, arg: A, timeout: Option<Duration>) -> FnSubmit<A, R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        // `push` decides refusal under the pool's lock; `arg` is only borrowed until then,
        // so a refused submit still hands it back.
        let (promise, future) = Promise::new();
        let args = match postcard::to_stdvec(&arg) {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = promise.set_error(TaskError::Transport(
                    format!("cannot encode the argument: {e}").into(),
                ));
                return Ok(future);
            }
        };
        let (trampoline, function) = shipping::ship(f, shipping::trampoline::<A, R> as Trampoline);
        let job = Job {
            trampoline,
            function,
            args,
            timeout,
            sink: Box::new(PromiseSink {
                promise,
                decode: decode_one::<R>,
            }),
        };
        match self.shared.push(job) {
            Ok(()) => Ok(future),
            Err(refusal) => Err(refusal.into_error((f, arg))),
        }
    }

    /// The same as [`submit`](Self::submit), under the name both pools share, so code that
    /// uses `apply` and `map` switches between threads and processes by changing one line
    /// (Python's `Pool.apply_async`).
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::ProcessPoolExecutor;
    /// fn double(x: i32) -> i32 { x * 2 }
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::new()?;
    /// assert_eq!(pool.apply(double, 21)?.result()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> FnSubmit<A, R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit(f, arg)
    }

    /// Applies `f` to every item in worker processes, results in input order: Python's
    /// `executor.map` / `Pool.imap`. Lazy and bounded like
    /// [`ThreadPoolExecutor::map`](crate::ThreadPoolExecutor::map);
    /// [`chunk_size`](Map::chunk_size) sends several items per message (Python's
    /// `chunksize`), which is what makes cheap functions worth sending to processes.
    ///
    /// # Examples
    ///
    /// See [`ProcessPoolExecutor`].
    pub fn map<'a, A, R, I>(&self, f: fn(A) -> R, items: I) -> Map<'a, R>
    where
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        Map::new(self.source(f, items), 2 * self.max_workers())
    }

    /// Like [`map`](Self::map), in completion order (Python's `imap_unordered`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::ProcessPoolExecutor;
    /// fn len(s: String) -> usize { s.len() }
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::new()?;
    /// let total: usize = pool.map_unordered(len, ["a".to_string(), "bb".to_string()])
    ///     .map(Result::unwrap).sum();
    /// assert_eq!(total, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_unordered<'a, A, R, I>(&self, f: fn(A) -> R, items: I) -> MapUnordered<'a, R>
    where
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        MapUnordered::new(self.source(f, items), 2 * self.max_workers())
    }

    fn source<'a, A, R, I>(&self, f: fn(A) -> R, items: I) -> Source<'a, R>
    where
        A: Serialize + DeserializeOwned + 'a,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        let shared = self.shared.clone();
        let mut items = items.into_iter();
        let (trampoline, function) =
            shipping::ship(f, shipping::chunk_trampoline::<A, R> as Trampoline);
        Box::new(move |chunk| {
            let batch: Vec<A> = items.by_ref().take(chunk).collect();
            if batch.is_empty() {
                return None;
            }
            let len = batch.len();
            let (promise, future) = Promise::new();
            match postcard::to_stdvec(&batch) {
                Ok(args) => {
                    let job = Job {
                        trampoline,
                        function,
                        args,
                        timeout: shared.config.task_timeout,
                        sink: Box::new(PromiseSink {
                            promise,
                            decode: decode_chunk::<R>,
                        }),
                    };
                    if let Err(refusal) = shared.push(job) {
                        return Some((len, Err(Arc::from(refusal.into_error(()).to_string()))));
                    }
                }
                Err(e) => {
                    let _ = promise.set_error(TaskError::Transport(
                        format!("cannot encode the arguments: {e}").into(),
                    ));
                }
            }
            Some((len, Ok(future)))
        })
    }

    /// The number of worker processes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::ProcessPoolExecutor;
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::builder().max_workers(3).build()?;
    /// assert_eq!(pool.max_workers(), 3);
    /// # Ok::<(), concurrent_futures::BuildError>(())
    /// ```
    pub fn max_workers(&self) -> usize {
        self.shared.config.max_workers
    }

    /// The process ids of the workers alive now.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::ProcessPoolExecutor;
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::new()?;
    /// assert!(!pool.worker_pids().is_empty()); // the first worker starts with the pool
    /// # Ok::<(), concurrent_futures::BuildError>(())
    /// ```
    pub fn worker_pids(&self) -> Vec<u32> {
        let state = self.shared.state.lock();
        state
            .children
            .iter()
            .flatten()
            .map(|c| c.lock().id())
            .collect()
    }

    /// Returns `true` once workers failed to start too many times in a row (a crash loop,
    /// e.g. a program whose workers die at start-up): queued tasks failed with
    /// [`TaskError::BrokenExecutor`] and submits are refused.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::ProcessPoolExecutor;
    /// concurrent_futures::init();
    /// assert!(!ProcessPoolExecutor::new()?.is_broken());
    /// # Ok::<(), concurrent_futures::BuildError>(())
    /// ```
    pub fn is_broken(&self) -> bool {
        self.shared.state.lock().broken.is_some()
    }

    /// Stops accepting tasks; with `wait`, blocks until queued tasks ran and every worker
    /// exited; with `cancel_futures`, first cancels the tasks that have not started.
    /// Idempotent. Python: `shutdown(wait, cancel_futures)`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::ProcessPoolExecutor;
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::new()?;
    /// pool.shutdown_with(true, true);
    /// assert!(pool.worker_pids().is_empty());
    /// # Ok::<(), concurrent_futures::BuildError>(())
    /// ```
    pub fn shutdown_with(&self, wait: bool, cancel_futures: bool) {
        self.shared.shutdown(wait, cancel_futures);
    }

    /// Stops accepting tasks and waits for the queued ones and for every worker to exit.
    ///
    /// # Examples
    ///
    /// See [`shutdown_with`](Self::shutdown_with).
    pub fn shutdown(&self) {
        self.shutdown_with(true, false);
    }

    /// Kills every worker now and cancels what is queued (Python's `Pool.terminate`). Running
    /// tasks fail with [`TaskError::WorkerDied`]. Waits until the workers are reaped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::ProcessPoolExecutor;
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::new()?;
    /// pool.terminate();
    /// assert!(pool.worker_pids().is_empty());
    /// # Ok::<(), concurrent_futures::BuildError>(())
    /// ```
    pub fn terminate(&self) {
        self.shared.shutdown(false, true);
        let children: Vec<_> = self
            .shared
            .state
            .lock()
            .children
            .iter()
            .flatten()
            .cloned()
            .collect();
        for child in children {
            let _ = child.lock().kill();
        }
        self.shared.shutdown(true, false);
    }
}

impl Shared {
    /// Queues a job; if the pool shut down or broke meanwhile and the job has not started,
    /// takes it back (cancelled) and reports the refusal.
    fn push(&self, job: Job) -> Result<(), Refusal> {
        let state = self.state.lock();
        let refusal = match &state.broken {
            Some(reason) => Some(Refusal::Broken(reason.clone())),
            None => state.shutdown.then_some(Refusal::Shutdown),
        };
        if let Some(refusal) = refusal {
            job.sink.cancel();
            return Err(refusal);
        }
        // Under the state lock, so no shutdown's stop messages can be queued ahead of it.
        let _ = self.jobs_tx.send(Some(job));
        Ok(())
    }

    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let managers = {
            let mut state = self.state.lock();
            if cancel_futures {
                self.cancel_queued();
            }
            if !state.shutdown {
                state.shutdown = true;
                for _ in 0..self.config.max_workers {
                    let _ = self.jobs_tx.send(None);
                }
            }
            if wait {
                std::mem::take(&mut state.managers)
            } else {
                Vec::new()
            }
        };
        for m in managers {
            let _ = m.join();
        }
    }

    fn cancel_queued(&self) {
        let mut stops = 0;
        while let Ok(message) = self.jobs_rx.try_recv() {
            match message {
                Some(job) => {
                    job.sink.cancel();
                }
                None => stops += 1,
            }
        }
        for _ in 0..stops {
            let _ = self.jobs_tx.send(None);
        }
    }

    fn break_pool(&self, reason: String) {
        let reason: Arc<str> = reason.into();
        log::error!(target: "concurrent_futures", "process pool broken: {reason}");
        let mut stops = 0;
        {
            let mut state = self.state.lock();
            state.broken.get_or_insert(reason.clone());
            while let Ok(message) = self.jobs_rx.try_recv() {
                match message {
                    Some(job) => job.sink.fail(TaskError::BrokenExecutor(reason.clone())),
                    None => stops += 1,
                }
            }
            for _ in 0..stops {
                let _ = self.jobs_tx.send(None);
            }
        }
    }

    /// Starts a worker process and checks its handshake.
    fn start_worker(&self) -> Result<Worker, String> {
        let seq = self.spawns.fetch_add(1, Ordering::Relaxed);
        let path: PathBuf = std::env::temp_dir().join(format!(
            "concurrent-futures-{}-{}-{seq}.sock",
            std::process::id(),
            self.id
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
        let result = self.spawn_and_accept(&listener, &path);
        let _ = std::fs::remove_file(&path);
        result
    }

    fn spawn_and_accept(&self, listener: &UnixListener, path: &PathBuf) -> Result<Worker, String> {
        let exe = shipping::worker_executable()
            .map_err(|e| format!("cannot find this executable: {e}"))?;
        let mut command = Command::new(exe);
        if let Some(init) = self.config.initializer {
            command.env(
                worker::INIT_ENV,
                shipping::offset(init as usize).to_string(),
            );
        }
        let mut child = command
            // In a test binary these arguments run only the worker test; in a program they
            // are never looked at, because `init()` runs first and does not return.
            .args([
                worker::WORKER_TEST,
                "--exact",
                "--nocapture",
                "-q",
                "--test-threads=1",
            ])
            .env(worker::WORKER_ENV, path)
            .env(worker::PARENT_ENV, std::process::id().to_string())
            .env(worker::LIMIT_ENV, self.config.frame_limit.to_string())
            .stdin(Stdio::null())
            // Its own process group: Ctrl-C in a terminal reaches the parent, which decides.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start a worker process: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot poll the worker socket: {e}"))?;
        let deadline = Instant::now() + self.config.start_timeout;
        let mut socket = loop {
            match listener.accept() {
                Ok((socket, _)) => break socket,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(kill_with(&mut child, format!("accept failed: {e}"))),
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "the worker {} before connecting. Its main must call \
                     concurrent_futures::init() first; in a test binary, add \
                     concurrent_futures::worker_test!() at the root of the test crate",
                    describe(status)
                ));
            }
            if Instant::now() >= deadline {
                return Err(kill_with(
                    &mut child,
                    "the worker did not connect in time".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let setup = socket
            .set_nonblocking(false)
            .and_then(|()| socket.set_read_timeout(Some(self.config.start_timeout)));
        if let Err(e) = setup {
            return Err(kill_with(
                &mut child,
                format!("cannot set up the worker socket: {e}"),
            ));
        }
        match frame::read(&mut socket, self.config.frame_limit) {
            Ok((frame::HELLO, hello)) if hello.len() == 16 => {
                let fingerprint = u64::from_le_bytes(hello[..8].try_into().expect("8 bytes"));
                let layout = i64::from_le_bytes(hello[8..].try_into().expect("8 bytes"));
                if fingerprint != shipping::fingerprint() || layout != shipping::layout() {
                    return Err(kill_with(
                        &mut child,
                        "the worker runs a different build of this program (was the \
                         executable replaced?)"
                            .into(),
                    ));
                }
            }
            Err(FrameError::Io(_)) => {
                // The worker hung up (or timed out) before saying hello: give it a moment to
                // finish exiting so that its own status is reported, then kill it.
                let how = describe(reap_within(&mut child, Duration::from_secs(2)));
                return Err(format!(
                    "the worker {how} during start-up (if it has an initializer, did it \
                     panic? its message is on stderr)"
                ));
            }
            _ => {
                return Err(kill_with(
                    &mut child,
                    "the worker's handshake failed".into(),
                ))
            }
        }
        Ok(Worker {
            child: Arc::new(Mutex::new(child)),
            socket,
            tasks: 0,
        })
    }

    fn set_child(&self, slot: usize, child: Option<Arc<Mutex<Child>>>) {
        self.state.lock().children[slot] = child;
    }

    /// The manager thread of worker slot `slot`.
    fn manage(self: Arc<Self>, slot: usize, mut worker: Option<Worker>) {
        let mut start_failures = 0;
        loop {
            let message = match (self.config.idle_timeout, &worker) {
                (Some(idle), Some(_)) => match self.jobs_rx.recv_timeout(idle) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        self.stop(slot, worker.take());
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                },
                _ => self.jobs_rx.recv().unwrap_or(None),
            };
            let Some(job) = message else { break };
            if !job.sink.start() {
                continue; // cancelled while queued
            }
            if let Some(reason) = self.state.lock().broken.clone() {
                job.sink.fail(TaskError::BrokenExecutor(reason));
                continue;
            }
            let mut w = match worker.take() {
                Some(w) => w,
                None => match self.start_worker() {
                    Ok(w) => {
                        start_failures = 0;
                        self.set_child(slot, Some(w.child.clone()));
                        w
                    }
                    Err(reason) => {
                        start_failures += 1;
                        if start_failures >= self.config.max_start_failures {
                            let reason = format!(
                                "{start_failures} worker processes in a row failed to start: {reason}"
                            );
                            job.sink
                                .fail(TaskError::BrokenExecutor(reason.as_str().into()));
                            self.break_pool(reason);
                        } else {
                            job.sink.fail(TaskError::WorkerDied(reason.into()));
                        }
                        continue;
                    }
                },
            };
            match self.run(&mut w, job) {
                Alive::Yes => {
                    w.tasks += 1;
                    if self
                        .config
                        .max_tasks_per_child
                        .is_some_and(|m| w.tasks >= m)
                    {
                        self.stop(slot, Some(w));
                    } else {
                        worker = Some(w);
                    }
                }
                Alive::No => self.set_child(slot, None),
            }
        }
        self.stop(slot, worker);
    }

    /// Runs one job on `w`. Reports whether the worker is still usable.
    fn run(&self, w: &mut Worker, job: Job) -> Alive {
        let header = [job.trampoline.to_le_bytes(), job.function.to_le_bytes()];
        let limit = self.config.frame_limit;
        if let Err(e) = frame::write(
            &mut w.socket,
            frame::TASK,
            &[&header[0], &header[1], &job.args],
            limit,
        ) {
            if e.kind() == io::ErrorKind::InvalidInput {
                job.sink.fail(TaskError::Transport(
                    format!("argument too large: {e}").into(),
                ));
                return Alive::Yes;
            }
            let how = reap(w);
            job.sink.fail(TaskError::WorkerDied(how.into()));
            return Alive::No;
        }
        let _ = w.socket.set_read_timeout(job.timeout);
        match frame::read_polled(&mut w.socket, limit) {
            Ok((frame::DONE, bytes)) => job.sink.done(&bytes),
            Ok((frame::PANICKED, msg)) => job
                .sink
                .fail(TaskError::Panicked(String::from_utf8_lossy(&msg).into())),
            Ok((frame::BROKEN, msg)) => job
                .sink
                .fail(TaskError::Transport(String::from_utf8_lossy(&msg).into())),
            Ok((kind, _)) => {
                job.sink.fail(TaskError::Transport(
                    format!("unexpected frame kind {kind}").into(),
                ));
                kill(w);
                return Alive::No;
            }
            Err(FrameError::Corrupt(why)) => {
                // The stream is out of step: this worker cannot be trusted any more.
                job.sink.fail(TaskError::Transport(why.into()));
                kill(w);
                return Alive::No;
            }
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                terminate_then_kill(w, self.config.kill_grace);
                job.sink.fail(TaskError::TimedOut);
                return Alive::No;
            }
            Err(FrameError::Io(_)) => {
                let how = reap(w);
                job.sink.fail(TaskError::WorkerDied(how.into()));
                return Alive::No;
            }
        }
        Alive::Yes
    }

    /// Asks a worker to exit and reaps it.
    fn stop(&self, slot: usize, worker: Option<Worker>) {
        let Some(mut w) = worker else { return };
        let _ = frame::write(&mut w.socket, frame::STOP, &[], self.config.frame_limit);
        let _ = w.socket.set_read_timeout(Some(Duration::from_secs(5)));
        // The worker exits on STOP; its end of the socket closing tells us so.
        let _ = frame::read(&mut w.socket, self.config.frame_limit);
        let mut child = w.child.lock();
        match child.try_wait() {
            Ok(Some(_)) => {}
            _ => {
                let _ = child.wait();
            }
        }
        drop(child);
        self.set_child(slot, None);
    }
}

/// Why the pool refuses a task; becomes a [`SubmitError`] around what the caller gets back.
enum Refusal {
    Shutdown,
    Broken(Arc<str>),
}

impl Refusal {
    fn into_error<F>(self, task: F) -> SubmitError<F> {
        match self {
            Refusal::Shutdown => SubmitError::Shutdown(task),
            Refusal::Broken(reason) => SubmitError::Broken { task, reason },
        }
    }
}

enum Alive {
    Yes,
    No,
}

/// Asks a worker past its time limit to stop (SIGTERM), gives it `grace` to exit, then kills
/// it (SIGKILL), and reaps it.
fn terminate_then_kill(w: &mut Worker, grace: Duration) {
    let mut child = w.child.lock();
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: `kill` has no memory-safety preconditions. The pid is our own child's and
        // it has not been reaped (we hold its `Child` and only reap below), so the pid cannot
        // have been reused by another process.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let _ = reap_within(&mut child, grace);
}

/// Kills and reaps a worker (a hung or untrustworthy one).
fn kill(w: &mut Worker) {
    let mut child = w.child.lock();
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits up to `grace` for `child` to exit by itself, then kills it; returns how it ended.
fn reap_within(child: &mut Child, grace: Duration) -> ExitStatus {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            _ => {
                let _ = child.kill();
                // If even waiting fails, report the kill we just sent.
                return child.wait().unwrap_or_else(|_| ExitStatus::from_raw(9));
            }
        }
    }
}

fn kill_with(child: &mut Child, why: String) -> String {
    let _ = child.kill();
    let _ = child.wait();
    why
}

/// Reaps a worker whose socket closed and says how it died.
fn reap(w: &mut Worker) -> String {
    let mut child = w.child.lock();
    match child.wait() {
        Ok(status) => describe(status),
        Err(e) => format!("could not be reaped: {e}"),
    }
}

fn describe(status: ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        let name = match signal {
            4 => " (SIGILL)",
            6 => " (SIGABRT)",
            7 => " (SIGBUS)",
            9 => " (SIGKILL)",
            11 => " (SIGSEGV)",
            15 => " (SIGTERM)",
            _ => "",
        };
        format!("killed by signal {signal}{name}")
    } else {
        match status.code() {
            Some(code) => format!("exited with code {code}"),
            None => "exited".into(),
        }
    }
}

impl Drop for ProcessPoolExecutor {
    /// Shuts down and waits, like the end of a Python `with` block.
    fn drop(&mut self) {
        self.shared.shutdown(true, false);
    }
}

impl fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPoolExecutor")
            .field("max_workers", &self.max_workers())
            .field("workers", &self.worker_pids().len())
            .field("broken", &self.is_broken())
            .finish()
    }
}
