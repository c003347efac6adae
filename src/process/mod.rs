//! [`ProcessPoolExecutor`]: the same API over worker processes, with crash isolation.
//!
//! # Who owns what
//!
//! ```text
//! submit ──Job──▶ jobs channel ──▶ manager thread i ──TASK frame──▶ worker process i
//!                                        ▲  owns the Connection         │
//!   Future ◀── Promise completed ◀────────┴── DONE / PANICKED / BROKEN ◀─┘
//!      callbacks ──▶ the pool's callback threads (never a manager)
//! ```
//!
//! Files, one concern each: `builder.rs` (settings, checked at build), `pool.rs` (the queue,
//! lazy manager threads, the list of workers, shutdown), `manager.rs` (one worker at a time,
//! one job at a time, time limits, chunk retries), `connection.rs` (starting a worker over
//! a private socket pair, the handshake, and every byte read from it: the trust boundary),
//! `frame.rs` (framing), `codec.rs` (bounded decoding), `shipping.rs` (functions as code
//! offsets, checked before any call), `worker.rs` (the worker's side), `report.rs` (a
//! task's panic as the worker reports it, and the error the parent makes of it), `job.rs`
//! (what the queue carries).
//!
//! A worker is a re-execution of this program that [`init`] turns into a task server. Its
//! connection to the parent is one end of a socket pair that becomes its standard input:
//! nothing is created on the filesystem, and no other process can reach either end. The
//! worker proves in its HELLO that it runs the same build; the parent then sends its setup
//! (frame limit, initializer) over the same connection. Nothing comes from the environment
//! but a marker, which is useless without the connection and removed at once.
//!
//! # Worker life cycle
//!
//! ```text
//! (none) --job, no idle worker--> STARTING --HELLO, SETUP, READY--> IDLE --TASK--> BUSY --DONE--> IDLE
//! STARTING --exit / bad HELLO / init failed / timeout--> (none)   failures in a row >= 3: BROKEN pool
//! BUSY --EOF (crash, abort, exit, kill)--> (none), replaced        the task fails with WorkerDied(how)
//! BUSY --time limit--> SIGTERM, grace, SIGKILL --> (none), replaced   the task fails with TimedOut
//! BUSY --garbage or a stalled frame--> SIGKILL --> (none), replaced   the task fails with Transport
//! IDLE --max_tasks_per_child / idle timeout / shutdown--> STOP frame --> exited, reaped
//! ```
//!
//! A dead worker fails only its own task (or, in a chunk of a map, only the item it died
//! on: the chunk's items are run again one by one); its manager starts a new one.

mod builder;
mod child;
mod codec;
mod config;
mod connection;
mod frame;
mod job;
mod manager;
mod pool;
mod report;
mod shipping;
mod worker;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::builder::{MIN_FRAME_BYTES, ProcessPoolBuilder};
use self::job::{Job, Target};
use self::pool::Shared;
use self::shipping::Trampoline;
pub use self::worker::init;
use crate::error::{SubmitError, TaskError};
use crate::executor::FnSubmit;
use crate::future::{Future, Promise};
use crate::map::{Map, MapUnordered, Source};
use crate::options::TaskOptions;

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
#[cfg_attr(docsrs, doc(cfg(all(unix, feature = "process"))))]
pub struct ProcessPoolExecutor {
    shared: Arc<Shared>,
}

impl ProcessPoolExecutor {
    /// A pool with one worker per CPU: Python's `ProcessPoolExecutor()`. Like
    /// [`ThreadPoolExecutor::new`](crate::ThreadPoolExecutor::new) it returns the pool
    /// itself, so the two switch in one line (`ThreadPoolExecutor::new().map(f, xs)` and
    /// `ProcessPoolExecutor::new().map(f, xs)`).
    ///
    /// # Panics
    ///
    /// If the pool cannot start, with what to do: [`init`](crate::init) did not run first
    /// in `main`, or the first worker process could not start. To handle that as an error
    /// instead, use [`builder`](Self::builder)`().build()`, which returns it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn double(x: u32) -> u32 { x * 2 }
    ///
    /// concurrent_futures::init(); // first thing in main
    /// let pool = concurrent_futures::ProcessPoolExecutor::new();
    /// assert_eq!(pool.submit(double, 21)?.result()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> ProcessPoolExecutor {
        match ProcessPoolBuilder::new().build() {
            Ok(pool) => pool,
            // The `Debug` form names the error and says what to do.
            Err(err) => panic!("ProcessPoolExecutor::new() could not start the pool: {err:?}"),
        }
    }

    /// A builder for the number of workers, time limits and worker recycling.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// concurrent_futures::init();
    /// let pool = concurrent_futures::ProcessPoolExecutor::builder().max_workers(2).build()?;
    /// # Ok::<(), concurrent_futures::BuildError>(())
    /// ```
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder::new()
    }

    /// Runs `f(arg)` in a worker process and returns a [`Future`](crate::Future) for the result: Python's
    /// `executor.submit(fn, arg)`. Use a tuple or struct for several arguments.
    ///
    /// A panic in `f` is [`TaskError::Panicked`] (the worker lives on), its message followed
    /// by where it happened: `"bad pixel (worker process 4242, thread 'main', at
    /// src/main.rs:9:5)"`. The worker prints nothing on the shared stderr unless
    /// `RUST_BACKTRACE` asks for the standard report and backtrace. A worker that dies
    /// fails this task with [`TaskError::WorkerDied`] and is replaced.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Shutdown`](crate::SubmitError::Shutdown) or
    /// [`SubmitError::Broken`](crate::SubmitError::Broken), with `(f, arg)` handed back.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use concurrent_futures::{ProcessPoolExecutor, TaskError};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Job { name: String, size: u64 }
    ///
    /// fn describe(job: Job) -> String { format!("{} is {} bytes", job.name, job.size) }
    /// fn fails(_: ()) -> u8 { panic!("bad input") }
    ///
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::new();
    /// let fut = pool.submit(describe, Job { name: "a.txt".into(), size: 3 })?;
    /// assert_eq!(fut.result()?, "a.txt is 3 bytes");
    /// // A panic is the task's error; the worker lives on.
    /// assert!(matches!(pool.submit(fails, ())?.result(), Err(TaskError::Panicked(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> FnSubmit<A, R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_inner(f, arg, self.shared.config.time_limit)
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
    /// let pool = ProcessPoolExecutor::new();
    /// let fut = pool.submit_with_time_limit(hang, (), Duration::from_millis(100))?;
    /// assert_eq!(fut.result(), Err(TaskError::TimedOut));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit_with_time_limit<A, R>(
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

    /// [`submit`](Self::submit) with per-task settings: the same call on every executor.
    /// A [`time_limit`](TaskOptions::time_limit) overrides the pool's
    /// [`time_limit`](ProcessPoolBuilder::time_limit) for this task: past it, the worker
    /// process running it is killed and replaced, and the future fails with
    /// [`TaskError::TimedOut`].
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit); also [`SubmitError::Unsupported`] for a setting only the
    /// Redis executor honours (retries, an id, a delay). `(f, arg)` comes back in each.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::{ProcessPoolExecutor, TaskError, TaskOptions};
    /// # use std::time::Duration;
    /// fn hang(_: ()) {
    ///     loop { std::thread::sleep(Duration::from_secs(1)) }
    /// }
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::new();
    /// let opts = TaskOptions::new().time_limit(Duration::from_millis(100));
    /// assert_eq!(pool.submit_with(hang, (), opts)?.result(), Err(TaskError::TimedOut));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit_with<A, R>(&self, f: fn(A) -> R, arg: A, opts: TaskOptions) -> FnSubmit<A, R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        if let Some(option) = opts.queue_only() {
            return Err(SubmitError::Unsupported {
                task: (f, arg),
                option,
            });
        }
        self.submit_inner(f, arg, opts.time_limit)
    }

    /// The old name of [`submit_with_time_limit`](Self::submit_with_time_limit).
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::ProcessPoolExecutor;
    /// # use std::time::Duration;
    /// fn double(x: u32) -> u32 { x * 2 }
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::new();
    /// #[allow(deprecated)]
    /// let fut = pool.submit_with_timeout(double, 21, Duration::from_secs(5))?;
    /// assert_eq!(fut.result()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[deprecated(
        since = "0.2.0",
        note = "renamed `submit_with_time_limit`: `time_limit` is the setting's name on every executor"
    )]
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
        self.submit_with_time_limit(f, arg, limit)
    }

    fn submit_inner<A, R>(&self, f: fn(A) -> R, arg: A, timeout: Option<Duration>) -> FnSubmit<A, R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        // `push` decides refusal under the pool's lock; `arg` is only borrowed until then,
        // so a refused submit still hands it back.
        let (promise, future) = Promise::new();
        let args = match codec::encode(&arg) {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = promise.set_error(TaskError::Transport(
                    format!("cannot encode the argument: {e}").into(),
                ));
                return Ok(future);
            }
        };
        let (sink, trace) = job::traced(
            Box::new(job::One(promise)),
            std::any::type_name::<fn(A) -> R>(),
        );
        let job = Job {
            call: Target {
                code: shipping::ship(f, shipping::trampoline::<A, R> as Trampoline),
                trace,
            },
            args,
            items: None,
            timeout,
            sink,
        };
        match self.shared.push(job, &|| future.cancel()) {
            Ok(()) => Ok(future),
            Err(refusal) => Err(pool::refused(refusal, (f, arg))),
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
    /// let pool = ProcessPoolExecutor::new();
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
    /// [`ThreadPoolExecutor::map`](crate::ThreadPoolExecutor::map). Several items go per
    /// message, as many as the measured cost per item makes worth about 2 ms of the
    /// workers' time (one per message for slow items), which is what makes cheap functions
    /// worth sending to processes; [`chunk_size`](Map::chunk_size) pins a size (Python's
    /// `chunksize`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// concurrent_futures::init();
    /// let pool = concurrent_futures::ProcessPoolExecutor::new();
    /// // Chunks of 1,000 items per message make a cheap function worth sending to processes.
    /// let squares: Vec<u64> = pool.map(square, 0..10_000).chunk_size(1_000).collect::<Result<_, _>>()?;
    /// assert_eq!(squares[99], 99 * 99);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// let pool = ProcessPoolExecutor::new();
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
        let call = shipping::ship(f, shipping::chunk_trampoline::<A, R> as Trampoline);
        // The frame also carries the call and the results; half the limit for the items.
        let limit = Arc::new(crate::map::Limit::new(shared.config.frame_limit / 2));
        let sizes = limit.clone();
        let chunk = move |batch: crate::map::Few<A>| {
            let len = batch.len();
            let (promise, future) = Promise::new();
            // The encoding of a `Vec<A>`, item by item, so that each item can be sent again
            // alone if the chunk's worker dies.
            let mut args = manager::codec_len(len);
            let ranges = match codec::encode_items(&batch, &mut args) {
                Ok(ranges) => ranges,
                Err(e) => {
                    let _ = promise.set_error(TaskError::Transport(
                        format!("cannot encode the argument: {e}").into(),
                    ));
                    return Ok(future);
                }
            };
            drop(batch);
            sizes.saw(len, args.len());
            let (sink, trace) = job::traced(
                Box::new(job::Many(promise)),
                std::any::type_name::<fn(A) -> R>(),
            );
            let job = Job {
                call: Target { code: call, trace },
                args,
                items: Some(ranges),
                timeout: shared.config.time_limit,
                sink,
            };
            match shared.push(job, &|| future.cancel()) {
                Ok(()) => Ok(future),
                Err(refusal) => Err(Arc::from(pool::refused(refusal, ()).to_string())),
            }
        };
        crate::map::source_limited(items.into_iter(), chunk, limit)
    }

    /// Kills the worker running `future`'s task, which Python's `cancel()` cannot do: the
    /// future fails with [`TaskError::Cancelled`], the worker and every process in its
    /// process group (helpers the task started) are killed, the worker is replaced, and no
    /// other task is touched (a chunk of a map is killed whole). A task still queued is
    /// cancelled as [`Future::cancel`](crate::Future::cancel) would.
    ///
    /// The kill is exact: the worker is first frozen (SIGSTOP) and what it has sent is read,
    /// so the task killed is the one it is really running, even when quick tasks were sent
    /// ahead to it and it has run past the one its manager awaits. Returns `true` if the task
    /// was running and is killed, or was queued and is now cancelled: its future is then
    /// `Cancelled`, never a value. Returns `false` if it had already finished (its value is
    /// delivered) or was sent ahead to a worker still busy with an earlier task (its future
    /// reads as running, as in CPython's call queue; it becomes killable when it starts).
    /// Blocks only until the task's manager has looked, which it does at once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::{ProcessPoolExecutor, TaskError};
    /// # use std::time::Duration;
    /// fn stuck(_: ()) { loop { std::thread::sleep(Duration::from_secs(1)) } }
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::new();
    /// let fut = pool.submit(stuck, ())?;
    /// while !fut.running() { std::thread::sleep(Duration::from_millis(1)) }
    /// assert!(pool.kill_task(&fut));
    /// assert_eq!(fut.result(), Err(TaskError::Cancelled));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kill_task<T: Send + 'static>(&self, future: &crate::future::Future<T>) -> bool {
        self.shared.kill_task(future.id()) || future.cancel()
    }

    /// [`kill_task`](Self::kill_task) by the future's [`id`](crate::Future::id), for a Redis
    /// worker that handed its futures to callbacks.
    #[cfg(feature = "redis")]
    pub(crate) fn kill_task_id(&self, id: usize) -> bool {
        self.shared.kill_task(id)
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

    /// The process ids of the workers that exist now, starting or running.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::ProcessPoolExecutor;
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::new();
    /// assert!(!pool.worker_pids().is_empty()); // the first worker starts with the pool
    /// # Ok::<(), concurrent_futures::BuildError>(())
    /// ```
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared.worker_pids()
    }

    /// Tasks (and map chunks) submitted that no manager has taken yet: the same figure as
    /// [`ThreadPoolExecutor::queued`](crate::ThreadPoolExecutor::queued). A manager takes a
    /// task when its worker is free, or ahead of its turn while quick tasks keep its worker
    /// busy, so a task sent ahead counts as taken.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::ProcessPoolExecutor;
    /// fn double(x: u32) -> u32 { x * 2 }
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::new();
    /// pool.submit(double, 1)?.result()?;
    /// assert_eq!(pool.queued(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queued(&self) -> usize {
        self.shared.registry.queued()
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
    /// assert!(!ProcessPoolExecutor::new().is_broken());
    /// # Ok::<(), concurrent_futures::BuildError>(())
    /// ```
    pub fn is_broken(&self) -> bool {
        self.shared.broken().is_some()
    }

    /// Stops accepting tasks; with `wait`, blocks until queued tasks ran, every worker exited
    /// and was reaped, the manager threads were joined and the callbacks handed out have run;
    /// with `cancel_futures`, first cancels the tasks that have not started. Idempotent, and
    /// safe to call from a done-callback. Python: `shutdown(wait, cancel_futures)`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::ProcessPoolExecutor;
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::new();
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
    /// ```no_run
    /// fn one(_: ()) -> u8 { 1 }
    ///
    /// concurrent_futures::init();
    /// let pool = concurrent_futures::ProcessPoolExecutor::new();
    /// let fut = pool.submit(one, ())?;
    /// pool.shutdown(); // runs what is queued, then stops and reaps every worker
    /// assert!(fut.done());
    /// assert!(pool.worker_pids().is_empty());
    /// assert!(pool.submit(one, ()).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(&self) {
        self.shutdown_with(true, false);
    }

    /// Kills every worker now, including any still starting, and cancels what is queued
    /// (Python's `Pool.terminate`). Running tasks fail with [`TaskError::WorkerDied`]; a task
    /// whose worker was still starting is cancelled. Waits until the workers are reaped and
    /// the manager threads have exited.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::ProcessPoolExecutor;
    /// concurrent_futures::init();
    /// let pool = ProcessPoolExecutor::new();
    /// pool.terminate();
    /// assert!(pool.worker_pids().is_empty());
    /// # Ok::<(), concurrent_futures::BuildError>(())
    /// ```
    pub fn terminate(&self) {
        self.shared.terminate();
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

/// Generic code over threads, processes and Redis (see [`Executor`](crate::executor::Executor)):
/// a closure that captures data does not compile (a process runs plain functions).
impl crate::executor::Executor for ProcessPoolExecutor {
    fn apply_with<F, A, R>(
        &self,
        f: F,
        arg: A,
        opts: TaskOptions,
    ) -> Result<Future<R>, SubmitError<(F, A)>>
    where
        F: crate::executor::PlainFn<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_with(crate::executor::plain_fn_ptr(&f), arg, opts)
            .map_err(|e| e.map_task(|(_, a)| (f, a)))
    }

    fn map_fn<'a, F, A, R, I>(&self, f: F, items: I) -> Map<'a, R>
    where
        F: crate::executor::PlainFn<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        self.map(crate::executor::plain_fn_ptr(&f), items)
    }

    fn map_unordered_fn<'a, F, A, R, I>(&self, f: F, items: I) -> MapUnordered<'a, R>
    where
        F: crate::executor::PlainFn<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        self.map_unordered(crate::executor::plain_fn_ptr(&f), items)
    }

    fn shutdown(&self) {
        ProcessPoolExecutor::shutdown(self);
    }
}

impl Default for ProcessPoolExecutor {
    /// [`ProcessPoolExecutor::new`].
    ///
    /// # Panics
    ///
    /// As [`new`](ProcessPoolExecutor::new).
    fn default() -> Self {
        ProcessPoolExecutor::new()
    }
}
