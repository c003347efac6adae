//! [`Executor`]: what both pools can do, for code that takes either.

#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
use serde::{de::DeserializeOwned, Serialize};

use crate::future::Future;
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
use crate::map::{Map, MapUnordered};
use crate::SubmitError;
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
use crate::ThreadPoolExecutor;

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

/// The operations both pools share, over plain functions and serializable data: generic code
/// written against it runs on threads or on processes, as Python code switches between
/// `multiprocessing.dummy.Pool` and `multiprocessing.Pool`.
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
/// // With processes: word_lengths(&ProcessPoolExecutor::new()?, ...) — the same call.
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
    /// [`SubmitError`] with `(f, arg)` handed back if the pool refuses the task.
    fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> FnSubmit<A, R>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Maps `f` over `items`, results in input order (lazy, bounded, chunkable).
    fn map_fn<'a, A, R, I>(&self, f: fn(A) -> R, items: I) -> Map<'a, R>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a;

    /// Maps `f` over `items`, results in completion order.
    fn map_unordered_fn<'a, A, R, I>(&self, f: fn(A) -> R, items: I) -> MapUnordered<'a, R>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a;

    /// Stops accepting tasks and waits for the queued ones.
    fn shutdown(&self);
}

/// Both pools have inherent methods of the same shape; the trait forwards to them.
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
macro_rules! forward_executor {
    ($pool:ty) => {
        impl Executor for $pool {
            fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> FnSubmit<A, R>
            where
                A: Serialize + DeserializeOwned + Send + 'static,
                R: Serialize + DeserializeOwned + Send + 'static,
            {
                <$pool>::apply(self, f, arg)
            }

            fn map_fn<'a, A, R, I>(&self, f: fn(A) -> R, items: I) -> Map<'a, R>
            where
                A: Serialize + DeserializeOwned + Send + 'static,
                R: Serialize + DeserializeOwned + Send + 'static,
                I: IntoIterator<Item = A>,
                I::IntoIter: Send + 'a,
            {
                self.map(f, items)
            }

            fn map_unordered_fn<'a, A, R, I>(&self, f: fn(A) -> R, items: I) -> MapUnordered<'a, R>
            where
                A: Serialize + DeserializeOwned + Send + 'static,
                R: Serialize + DeserializeOwned + Send + 'static,
                I: IntoIterator<Item = A>,
                I::IntoIter: Send + 'a,
            {
                self.map_unordered(f, items)
            }

            fn shutdown(&self) {
                <$pool>::shutdown(self);
            }
        }
    };
}

#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
forward_executor!(ThreadPoolExecutor);
#[cfg(all(unix, feature = "process"))]
forward_executor!(crate::ProcessPoolExecutor);
#[cfg(feature = "redis")]
forward_executor!(crate::redis::RedisExecutor);
