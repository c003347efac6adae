//! [`SharedFuture`]: a clonable handle that reads one result by reference from many places.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::{Future, State, deadline_after};
use crate::error::TaskError;
use crate::sync::Mutex;

/// A clonable [`Future`] whose result is read by reference: Python's habit of keeping a
/// future in several places (dict keys, callbacks) and calling `result()` on each.
///
/// Made by [`Future::share`]. The value is moved out of the task once, into the shared
/// handle, and every clone reads the same `&T`; nothing is cloned, so `T` need not be
/// `Clone`. Errors are returned by value ([`TaskError`] is cheap to clone).
///
/// Clones compare and hash by the identity of the task, so they make good map keys. Clippy's
/// `mutable_key_type` lint flags such maps because the handle caches the value inside; as
/// the hash never depends on it, that warning is a false positive to `allow`.
///
/// # Examples
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
/// use std::collections::HashMap;
///
/// let pool = ThreadPoolExecutor::new();
/// let mut by_future = HashMap::new();
/// for url in ["a", "b"] {
///     let fut = pool.submit(move || url.len())?.share();
///     fut.add_done_callback(|f| assert_eq!(f.result(), Ok(&1))); // reads the value too
///     by_future.insert(fut, url);
/// }
/// for (fut, url) in &by_future {
///     assert_eq!(*fut.result()?, url.len());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedFuture<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    future: Future<T>,
    outcome: OnceLock<Result<T, TaskError>>,
    /// Held by the one thread that moves the outcome out of the task. The `OnceLock` is then
    /// only ever set by a thread holding it, so it never blocks anybody: every wait is on
    /// this lock, which the loom models see (a thread blocked inside std's `OnceLock` while
    /// another holds a loom lock would hang a model).
    init: Mutex<()>,
}

impl<T: Send + 'static> SharedFuture<T> {
    pub(super) fn new(future: Future<T>) -> Self {
        SharedFuture {
            inner: Arc::new(Inner {
                future,
                outcome: OnceLock::new(),
                init: Mutex::new(()),
            }),
        }
    }

    /// The outcome of a done future, moved out of the task on first use.
    fn outcome(&self) -> &Result<T, TaskError> {
        if let Some(outcome) = self.inner.outcome.get() {
            return outcome;
        }
        let _init = self.inner.init.lock();
        self.inner
            .outcome
            .get_or_init(|| self.inner.future.task.take())
    }

    fn outcome_ref(&self) -> Result<&T, TaskError> {
        self.outcome().as_ref().map_err(Clone::clone)
    }

    /// The underlying handle, for [`wait`](crate::wait) and [`as_completed`](crate::as_completed)
    /// (they also take `SharedFuture`s directly) and for state queries.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// let (promise, future) = Promise::new();
    /// let shared = future.share();
    /// promise.set_result(1).unwrap();
    /// assert!(shared.future().done());
    /// ```
    pub fn future(&self) -> &Future<T> {
        &self.inner.future
    }

    /// The current state. See [`Future::state`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{Promise, State};
    /// let (_promise, future) = Promise::<u8>::new();
    /// assert_eq!(future.share().state(), State::Pending);
    /// ```
    pub fn state(&self) -> State {
        self.inner.future.state()
    }

    /// Cancels the task if it has not started. See [`Future::cancel`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{Promise, TaskError};
    /// let (_promise, future) = Promise::<u8>::new();
    /// let shared = future.share();
    /// assert!(shared.clone().cancel());
    /// assert_eq!(shared.result(), Err(TaskError::Cancelled));
    /// ```
    pub fn cancel(&self) -> bool {
        self.inner.future.cancel()
    }

    /// Returns `true` if the future finished or was cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// let (promise, future) = Promise::new();
    /// let shared = future.share();
    /// promise.set_result(()).unwrap();
    /// assert!(shared.done());
    /// ```
    pub fn done(&self) -> bool {
        self.inner.future.done()
    }

    /// Blocks until the future is done. See [`Future::wait`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let shared = pool.submit(|| 1)?.share();
    /// shared.wait();
    /// assert!(shared.done());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&self) {
        self.inner.future.wait();
    }

    /// Blocks until the task is done and returns a reference to its value.
    ///
    /// # Errors
    ///
    /// The [`TaskError`] if the future is done without a value.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let shared = pool.submit(|| vec![0u8; 3])?.share();
    /// let a: &Vec<u8> = shared.result()?;
    /// assert_eq!(a.len(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn result(&self) -> Result<&T, TaskError> {
        self.wait();
        self.outcome_ref()
    }

    /// Like [`result`](Self::result), giving up after `timeout`: `None` if the future is not
    /// done by then (the task is not cancelled).
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// # use std::time::Duration;
    /// let (_promise, future) = Promise::<u8>::new();
    /// assert!(future.share().result_timeout(Duration::from_millis(1)).is_none());
    /// ```
    pub fn result_timeout(&self, timeout: Duration) -> Option<Result<&T, TaskError>> {
        self.result_deadline(deadline_after(timeout))
    }

    /// Like [`result_timeout`](Self::result_timeout) with a deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// # use std::time::Instant;
    /// let (promise, future) = Promise::new();
    /// promise.set_result(3).unwrap();
    /// assert_eq!(future.share().result_deadline(Instant::now()), Some(Ok(&3)));
    /// ```
    pub fn result_deadline(&self, deadline: Instant) -> Option<Result<&T, TaskError>> {
        if self.inner.future.wait_deadline(deadline) {
            Some(self.outcome_ref())
        } else {
            None
        }
    }

    /// The result if the future is done, without blocking; `None` if it is not.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// let (promise, future) = Promise::new();
    /// let shared = future.share();
    /// assert!(shared.try_result().is_none());
    /// promise.set_result('x').unwrap();
    /// assert_eq!(shared.try_result(), Some(Ok(&'x')));
    /// ```
    pub fn try_result(&self) -> Option<Result<&T, TaskError>> {
        if self.done() {
            Some(self.outcome_ref())
        } else {
            None
        }
    }

    /// Blocks until done and returns the error, or `None` if there is a value.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// let (promise, future) = Promise::<u8>::new();
    /// let shared = future.share();
    /// drop(promise);
    /// assert!(shared.exception().is_some());
    /// ```
    pub fn exception(&self) -> Option<TaskError> {
        self.wait();
        self.outcome().as_ref().err().cloned()
    }

    /// Calls `callback` with this shared future when it is done; the callback can read the
    /// value by reference. Same order and panic rules as [`Future::add_done_callback`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// use std::sync::mpsc;
    ///
    /// let (promise, future) = Promise::new();
    /// let (tx, rx) = mpsc::channel();
    /// future.share().add_done_callback(move |f| tx.send(*f.result().unwrap()).unwrap());
    /// promise.set_result(9).unwrap();
    /// assert_eq!(rx.recv().unwrap(), 9);
    /// ```
    pub fn add_done_callback(&self, callback: impl FnOnce(&SharedFuture<T>) + Send + 'static)
    where
        T: Sync,
    {
        let this = self.clone();
        self.inner
            .future
            .add_done_callback(move |_| callback(&this));
    }
}

impl<T> Clone for SharedFuture<T> {
    fn clone(&self) -> Self {
        SharedFuture {
            inner: self.inner.clone(),
        }
    }
}

impl<T> PartialEq for SharedFuture<T> {
    fn eq(&self, other: &Self) -> bool {
        self.inner.future == other.inner.future
    }
}

impl<T> Eq for SharedFuture<T> {}

impl<T> Hash for SharedFuture<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.future.hash(state);
    }
}

impl<T> fmt::Debug for SharedFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedFuture")
            .field(&self.inner.future)
            .finish()
    }
}
