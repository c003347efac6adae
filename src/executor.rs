//! [`Executor`]: what both pools can do, for code that takes either.

#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
use serde::{Serialize, de::DeserializeOwned};

use crate::error::SubmitError;
use crate::future::Future;
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
use crate::map::{Map, MapUnordered};
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
use crate::options::TaskOptions;

/// What submitting a `fn(A) -> R` with its argument returns: the future, or the refusal with
/// the function and argument handed back.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{FnSubmit, ThreadPoolExecutor};
///
/// fn double(x: u32) -> u32 { x * 2 }
/// let pool = ThreadPoolExecutor::new();
/// let submitted: FnSubmit<u32, u32> = pool.apply(double, 21);
/// assert_eq!(submitted?.result()?, 42);
/// pool.shutdown();
/// let (f, arg) = pool.apply(double, 5).unwrap_err().into_inner(); // both come back
/// assert_eq!(f(arg), 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type FnSubmit<A, R> = Result<Future<R>, SubmitError<(fn(A) -> R, A)>>;

/// The operations all executors share, over plain functions and serializable data: generic
/// code written against it runs on threads, on processes, or (feature `redis`) on workers
/// behind a Redis queue, as Python code switches between `multiprocessing.dummy.Pool` and
/// `multiprocessing.Pool`.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
///
/// fn word_lengths(pool: &impl Executor, words: Vec<String>) -> Vec<usize> {
///     fn len(w: String) -> usize {
///         w.len()
///     }
///     pool.map_fn(len, words).map(Result::unwrap).collect()
/// }
///
/// let threads = ThreadPoolExecutor::new();
/// assert_eq!(word_lengths(&threads, vec!["a".into(), "bcd".into()]), [1, 3]);
/// // With processes: word_lengths(&ProcessPoolExecutor::new(), ...) — the same call;
/// // with Redis: word_lengths(&RedisExecutor::builder(url, tasks).build()?, ...).
/// ```
///
/// A closure that captures data does not compile through the trait, on any executor, so a
/// call that compiles on threads compiles on processes too (a worker process receives the
/// argument, never the closure's captures). The error says "the Executor trait takes plain
/// functions: pass a fn item, or a closure that captures nothing, and send the data as the
/// argument":
///
/// ```compile_fail,E0080
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
///
/// let threads = ThreadPoolExecutor::new();
/// let k = 5u32;
/// let fut = Executor::apply(&threads, move |x: u32| x + k, 1); // captures `k`
/// ```
///
/// Pass the data as the argument instead:
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
///
/// let threads = ThreadPoolExecutor::new();
/// let k = 5u32;
/// let fut = Executor::apply(&threads, |(x, k): (u32, u32)| x + k, (1, k)).unwrap();
/// assert_eq!(fut.result(), Ok(6));
/// ```
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(all(unix, feature = "process"), feature = "redis")))
)]
pub trait Executor {
    /// Runs `f(arg)` and returns its future (Python's `apply_async` / `submit(fn, arg)`).
    ///
    /// # Errors
    ///
    /// [`SubmitError`] with `(f, arg)` handed back if the executor refuses the task: after
    /// shutdown, or, for Redis, a function its `Tasks` list lacks. (A closure that captures
    /// data is refused earlier, at compile time, on every executor: see the trait's
    /// examples.)
    fn apply<F, A, R>(&self, f: F, arg: A) -> Result<Future<R>, SubmitError<(F, A)>>
    where
        F: PlainFn<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_with(f, arg, TaskOptions::new())
    }

    /// [`apply`](Self::apply) with per-task settings: the executor's `submit_with`.
    ///
    /// # Errors
    ///
    /// As [`apply`](Self::apply); a local pool also refuses, with
    /// [`SubmitError::Unsupported`], a setting only the Redis executor honours.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{Executor, TaskError, TaskOptions, ThreadPoolExecutor};
    /// use std::time::Duration;
    ///
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    ///
    /// fn with_deadline(ex: &impl Executor) -> Result<u64, TaskError> {
    ///     let opts = TaskOptions::new().time_limit(Duration::from_millis(20));
    ///     ex.apply_with(nap, 500, opts).expect("accepted").result()
    /// }
    /// assert_eq!(with_deadline(&ThreadPoolExecutor::new()), Err(TaskError::TimedOut));
    /// ```
    fn apply_with<F, A, R>(
        &self,
        f: F,
        arg: A,
        opts: TaskOptions,
    ) -> Result<Future<R>, SubmitError<(F, A)>>
    where
        F: PlainFn<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Maps `f` over `items`, results in input order (lazy, bounded, chunkable).
    fn map_fn<'a, F, A, R, I>(&self, f: F, items: I) -> Map<'a, R>
    where
        F: PlainFn<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a;

    /// Maps `f` over `items`, results in completion order.
    fn map_unordered_fn<'a, F, A, R, I>(&self, f: F, items: I) -> MapUnordered<'a, R>
    where
        F: PlainFn<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a;

    /// Stops accepting tasks and waits for the queued ones.
    fn shutdown(&self);
}

/// A plain function (or a closure that captures nothing) from `A` to `R`: what the
/// [`Executor`] trait and the Redis executor take.
///
/// Every function item has a type of its own, so a plain function is known by its type,
/// not by its address: the Redis executor finds a task's registered name that way (the
/// compiler may give one function several addresses, a copy per codegen unit, so an
/// address says nothing reliable), and a process pool calls it through a function pointer
/// made from the type.
///
/// # Examples
///
/// ```
/// use concurrent_futures::PlainFn;
///
/// fn twice<F: PlainFn<u8, u8>>(f: F, x: u8) -> u8 { f(f(x)) }
/// fn inc(x: u8) -> u8 { x + 1 }
/// assert_eq!(twice(inc, 1), 3);
/// assert_eq!(twice(|x| x * 2, 3), 12);
/// ```
pub trait PlainFn<A, R>: Fn(A) -> R + Copy + Send + Sync + 'static {}

impl<F: Fn(A) -> R + Copy + Send + Sync + 'static, A, R> PlainFn<A, R> for F {}

/// A function pointer that calls `F`: for a function item or a closure that captures
/// nothing (a zero-sized `F`); `None` for anything else.
#[cfg(all(unix, feature = "process", feature = "redis"))]
pub(crate) fn fn_ptr<F: PlainFn<A, R>, A, R>(_f: &F) -> Option<fn(A) -> R> {
    (std::mem::size_of::<F>() == 0).then_some(trampoline::<F, A, R> as fn(A) -> R)
}

/// What the [`Executor`] trait says to a closure that captures data.
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
const CAPTURES: &str = "the Executor trait takes plain functions: pass a fn item, or a \
    closure that captures nothing, and send the data as the argument (a worker process or a \
    Redis worker receives the argument, never the closure's captures)";

/// Refuses at compile time, where it is called with a closure that captures data: through
/// the [`Executor`] trait the same call compiles on every executor or on none, so switching
/// from threads to processes is one line (a capturing closure would run on threads and
/// could not on processes). The error names [`CAPTURES`]' advice.
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
#[inline(always)]
pub(crate) fn require_plain<F>() {
    const {
        assert!(std::mem::size_of::<F>() == 0, "{}", CAPTURES);
    }
}

/// The function pointer of a plain function; a closure that captures data does not
/// compile here (see [`require_plain`]).
#[cfg(all(unix, feature = "process"))]
pub(crate) fn plain_fn_ptr<F: PlainFn<A, R>, A, R>(_f: &F) -> fn(A) -> R {
    require_plain::<F>();
    trampoline::<F, A, R>
}

/// Calls the zero-sized `F`; handed out by `fn_ptr` and `plain_fn_ptr` only.
#[cfg(all(unix, feature = "process"))]
#[allow(unsafe_code)]
fn trampoline<F: PlainFn<A, R>, A, R>(arg: A) -> R {
    // SAFETY: `fn_ptr` and `plain_fn_ptr` hand this trampoline out only for a zero-sized
    // `F` (checked at run time by the first, at compile time by the second), after each
    // was given a value of `F`. A zero-sized type has one representation, the empty one,
    // so `zeroed` produces exactly that value's bytes; and `F: Copy`, so making another
    // value of it from those bytes is a copy, which has no safety condition. Function items
    // and capture-free closures have no other invariant.
    let f: F = unsafe { std::mem::zeroed() };
    f(arg)
}
