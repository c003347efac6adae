//! Python's `concurrent.futures` for Rust: hand a pool a closure, get a [`Future`] back, and
//! consume results as they finish.
//!
//! ```
//! use concurrent_futures::{as_completed, wait, ReturnWhen, ThreadPoolExecutor};
//! use std::time::Duration;
//!
//! let pool = ThreadPoolExecutor::builder().max_workers(4).build()?;
//!
//! // submit / result
//! let fut = pool.submit(|| 6 * 7)?;
//! assert_eq!(fut.result()?, 42);
//!
//! // {executor.submit(f, x): x for x in xs} + as_completed, with an overall timeout
//! let futs: Vec<_> = ["a", "bb", "ccc"]
//!     .into_iter()
//!     .map(|s| (s, pool.submit(move || s.len()).unwrap()))
//!     .collect();
//! for item in as_completed(futs).timeout(Duration::from_secs(30)) {
//!     let (word, fut) = item?;
//!     assert_eq!(fut.result()?, word.len());
//! }
//!
//! // executor.map: input order, lazy, with a deadline from the call
//! let squares: Vec<u32> = pool
//!     .map(|x: u32| x * x, 1..=4)
//!     .timeout(Duration::from_secs(30))
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(squares, [1, 4, 9, 16]);
//!
//! // wait(fs, timeout, return_when)
//! let futs: Vec<_> = (0..3).map(|i| pool.submit(move || i).unwrap()).collect();
//! let (done, not_done) = wait(futs, Some(Duration::from_secs(5)), ReturnWhen::AllCompleted);
//! assert_eq!((done.len(), not_done.len()), (3, 0));
//!
//! // the handle is also a std Future
//! let fut = pool.submit(|| "async")?;
//! assert_eq!(futures::executor::block_on(fut)?, "async");
//!
//! pool.shutdown(); // or drop it: waits, like leaving a `with` block
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Python to Rust
//!
//! | Python | Rust |
//! | --- | --- |
//! | `ThreadPoolExecutor(max_workers=8, thread_name_prefix="w", initializer=f)` | [`ThreadPoolExecutor::builder()`](ThreadPoolExecutor::builder)`.max_workers(8).thread_name_prefix("w").initializer(f).build()?` |
//! | `ex.submit(fn, x)` | [`pool.submit(move \|\| fn(x))?`](ThreadPoolExecutor::submit) |
//! | `f.result()`, `f.result(timeout=t)` | [`f.result()`](Future::result), [`f.result_timeout(t)`](Future::result_timeout) |
//! | `f.exception()`, `f.cancel()`, `f.done()`, `f.running()` | same names on [`Future`] |
//! | `f.add_done_callback(cb)` | [`f.add_done_callback(\|f\| ...)`](Future::add_done_callback) |
//! | `await asyncio.wrap_future(f)` | `f.await` |
//! | `Future()`, `set_result`, `set_exception` | [`Promise::new()`](Promise::new), [`set_result`](Promise::set_result), [`set_exception`](Promise::set_exception) |
//! | `as_completed(fs, timeout=t)` | [`as_completed(fs)`](as_completed)`.timeout(t)` |
//! | `wait(fs, timeout, FIRST_COMPLETED)` | [`wait(fs, Some(t), ReturnWhen::FirstCompleted)`](wait) |
//! | `ex.map(fn, xs, timeout=t, buffersize=n)` | [`pool.map(fn, xs)`](ThreadPoolExecutor::map)`.timeout(t).buffer_size(n)` |
//! | `Pool.imap_unordered(fn, xs)` | [`pool.map_unordered(fn, xs)`](ThreadPoolExecutor::map_unordered), [`.with_index()`](MapUnordered::with_index) to know each result's item |
//! | `ex.shutdown(wait=True, cancel_futures=False)` | [`pool.shutdown()`](ThreadPoolExecutor::shutdown), [`shutdown_with(wait, cancel)`](ThreadPoolExecutor::shutdown_with), or drop |
//! | `CancelledError`, `BrokenExecutor`, an exception in the task | [`TaskError::Cancelled`], [`TaskError::BrokenExecutor`], [`TaskError::Panicked`] |
//! | `threading.Lock`, `RLock`, `Condition`, `Semaphore`, `Event`, `Barrier` | the [`lock`] module |
//! | `ProcessPoolExecutor(max_workers=4)`, `if __name__ == "__main__":` | `ProcessPoolExecutor::builder().max_workers(4).build()?` after `init()` first in `main` (Unix) |
//! | `pex.submit(fn, x)`, `Pool.apply_async(fn, (x,))`, `Pool.imap(fn, xs, chunksize)` | `pex.submit(fn, x)?`, `pex.apply(fn, x)?`, `pex.map(fn, xs).chunk_size(n)` |
//! | `multiprocessing.dummy` vs `multiprocessing` | the [`Executor`] trait: the same `apply` / `map_fn` on either pool |
//! | RQ's `q.enqueue(fn, x)` / `rq worker`, Celery's `delay` | `RedisExecutor::submit(fn, x)?` / `RedisWorker::builder(url, tasks).run()?` (feature `redis`, the [`redis`](mod@crate::redis) module) |
//!
//! # Where this crate differs from CPython, on purpose
//!
//! - Cancelling a future wakes every waiter at once, `wait` and `as_completed` included
//!   (python/cpython#92001, #87893).
//! - `map` is lazy with a bounded number of tasks in flight, so an endless input works, and
//!   one failing item does not end the iteration (python/cpython#108518).
//! - A worker that waits on a still-queued task of its own pool runs it inline instead of
//!   deadlocking.
//! - A panic in a task is a value in its future ([`TaskError::Panicked`]); a panic in a
//!   done-callback is logged through the [`log`] facade and the other callbacks still run.
//! - Timeouts never consume what they wait on: [`Future::result_timeout`] hands the future
//!   back, and [`AsCompletedTimeout::into_remaining`] returns the unfinished futures.
//! - A `map` deadline is final: once it passes no more input is read and the rest is
//!   cancelled (CPython still yields results that are done by then).
//! - Process pool callbacks run on a thread of their own, so a callback may wait on the pool
//!   or shut it down (in CPython it runs on the thread that would complete what it waits for).
//!
//! # Threads or processes
//!
//! Rust threads already run CPU work in parallel, so [`ThreadPoolExecutor`] is the default.
//! [`ProcessPoolExecutor`] adds isolation: a task that crashes, aborts, leaks or hangs fails
//! alone ([`TaskError::WorkerDied`], [`TaskError::TimedOut`]) and its worker is replaced,
//! where CPython breaks the whole pool. Workers talk to the parent over private socket
//! pairs and act on nothing else; see SECURITY.md for the trust model.
//!
//! # Cargo features
//!
//! - `process` (default): [`ProcessPoolExecutor`] on Unix, [`init`], and the [`Executor`]
//!   trait shared by both pools; brings serde, postcard and libc. Without it the crate is the
//!   thread pool, futures, `map`, `wait`, `as_completed` and the [`lock`] module, with six
//!   small dependencies.
//!
//! # Sharing results
//!
//! A [`Future`] is the single owner of its value: [`Future::result`] moves it out, with no
//! `Clone` bound. [`Future::share`] turns it into a clonable [`SharedFuture`] whose
//! [`result`](SharedFuture::result) hands out `&T` to every clone and to callbacks.

#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The crate tour names the process pool and the Redis executor, which a build may leave out.
#![cfg_attr(
    not(all(unix, feature = "process", feature = "redis")),
    allow(rustdoc::broken_intra_doc_links)
)]

#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
mod callbacks;
mod context;
mod error;
mod executor;
mod future;
pub mod lock;
mod map;
mod options;
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
mod outcome;
#[cfg(all(unix, feature = "process"))]
mod process;
#[cfg(feature = "tracing")]
mod propagate;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod registry;
mod sync;
mod thread;
#[cfg(any(feature = "tracing", feature = "metrics"))]
mod trace;
mod wait;

/// Pool tasks outside any pool, so that the loom models can run the claim-and-run path of a
/// thread pool task (`tests/loom.rs`). Exists only under `cfg(concurrent_futures_loom)`.
#[cfg(concurrent_futures_loom)]
#[doc(hidden)]
pub mod __loom {
    use std::sync::Arc;

    use crate::context::{RunCtx, WorkerCounters};
    use crate::error::TaskError;
    use crate::future::Future;
    use crate::future::{Runnable, Task};

    /// A queued pool task: what a worker receives.
    #[derive(Clone)]
    pub struct Queued(Arc<dyn Runnable>);

    /// A pool task running `f`, as a worker would receive it, and its future.
    pub fn task<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> (Queued, Future<T>) {
        let task = Task::new(f, 0);
        (Queued(task.clone()), Future::from_task(task))
    }

    impl std::fmt::Debug for Queued {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Queued")
        }
    }

    impl Queued {
        /// Runs the task as a worker does; true if it ran here.
        pub fn run(&self) -> bool {
            let counters = WorkerCounters::default();
            self.0.clone().run(&RunCtx {
                counters: &counters,
                mark_idle: None,
            })
        }

        /// Fails the task as a broken pool does; true if it was still pending.
        pub fn fail(&self) -> bool {
            self.0
                .clone()
                .fail(TaskError::BrokenExecutor("loom".into()))
        }
    }
}

/// The README's examples are compiled and run as doc tests (they show the process pool and
/// the Redis executor too).
#[cfg(all(
    doctest,
    unix,
    feature = "process",
    feature = "redis",
    feature = "tracing",
    feature = "dashboard"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use crate::error::{BuildError, MapError, Panic, SubmitError, TaskError, TimeoutError};
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
pub use crate::executor::Executor;
pub use crate::executor::{FnSubmit, PlainFn};
pub use crate::future::{
    Future, InvalidStateError, Promise, ResultTimeoutError, SharedFuture, State, TryResultError,
};
pub use crate::map::{Map, MapUnordered, MapUnorderedIndexed};
pub use crate::options::TaskOptions;
#[cfg(all(unix, feature = "process"))]
pub use crate::process::{MIN_FRAME_BYTES, ProcessPoolBuilder, ProcessPoolExecutor, init};
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub use crate::propagate::{Propagator, Relation, set_propagator};
pub use crate::thread::{Scope, ScopedTask, ThreadPoolBuilder, ThreadPoolExecutor};
pub use crate::wait::{
    AsCompleted, AsCompletedStream, AsCompletedTimeout, ReturnWhen, Waitable, as_completed, wait,
};
