//! [`Future<T>`]: the handle to a task's eventual result, and its stand-alone [`Promise`].

mod collector;
mod core;
mod errors;
#[cfg(feature = "redis")]
mod hooked;
mod promise;
mod shared;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub(crate) use self::collector::Collector;
// The task cell's face to the pools: what they queue and run. The cell itself (`core`) stays
// private to this module.
pub(crate) use self::core::{Call, Job, Runnable, Task};
use self::core::{Handle, Waiter};
pub use self::errors::{InvalidStateError, ResultTimeoutError, TryResultError};
#[cfg(feature = "redis")]
pub(crate) use self::hooked::{CancelHook, Hooked};
pub use self::promise::Promise;
pub use self::shared::SharedFuture;
use crate::error::TaskError;
use std::sync::Arc;

/// Where a [`Future`] is in its life.
///
/// ```text
/// Pending --start--> Running --finish--> Finished
/// Pending --cancel-> Cancelled
/// ```
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Promise, State};
///
/// let (promise, future) = Promise::<()>::new();
/// assert_eq!(future.state(), State::Pending);
/// assert!(future.cancel());
/// assert_eq!(future.state(), State::Cancelled);
/// assert_eq!(State::Cancelled.to_string(), "cancelled");
/// # drop(promise);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Queued; may still be cancelled.
    Pending,
    /// A worker is running the task; it can no longer be cancelled.
    Running,
    /// Done, with a value or an error.
    Finished,
    /// Cancelled before it started; done.
    Cancelled,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Finished => "finished",
            State::Cancelled => "cancelled",
        })
    }
}

/// A handle to the eventual result of a task: Python's `concurrent.futures.Future`.
///
/// A `Future` is the single owner of its result: [`result`](Self::result) moves the value
/// out without cloning it. To read one result from many places (Python code keeps futures in
/// dicts and reads them from callbacks), turn the handle into a clonable
/// [`SharedFuture`] with [`share`](Self::share), which hands out `&T`.
///
/// It is also a [`std::future::Future`]: `.await` it from async code and no thread blocks.
///
/// Futures compare and hash by identity, so they can be map keys, as in Python's
/// `{executor.submit(f, x): x for x in xs}`.
///
/// | Python | Rust |
/// | --- | --- |
/// | `f.cancel()` / `f.cancelled()` / `f.running()` / `f.done()` | same names |
/// | `f.result()` | [`result`](Self::result) (consumes the handle) |
/// | `f.result(timeout=t)` | [`result_timeout`](Self::result_timeout) (hands the handle back on timeout) |
/// | `f.exception()` | [`exception`](Self::exception) |
/// | `f.add_done_callback(fn)` | [`add_done_callback`](Self::add_done_callback) |
/// | `await asyncio.wrap_future(f)` | `f.await` |
///
/// # Examples
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::new();
/// let fut = pool.submit(|| "a".repeat(3))?;
/// fut.add_done_callback(|f| assert!(f.done()));
/// assert_eq!(fut.result()?, "aaa"); // moved out, not cloned
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Dropping a `Future` detaches its task, as dropping a `std::thread::JoinHandle` does: the
/// task still runs (a pool never cancels work because nobody waits), and its result is
/// dropped when it finishes. To stop a task that has not started, [`cancel`](Self::cancel)
/// it first.
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// let pool = ThreadPoolExecutor::new();
/// let ran = Arc::new(AtomicBool::new(false));
/// let r = ran.clone();
/// drop(pool.submit(move || r.store(true, Ordering::SeqCst))?); // detached, not cancelled
/// pool.shutdown(); // waits for it
/// assert!(ran.load(Ordering::SeqCst));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A `Future` is not `Clone`: its value has one owner. [`share`](Self::share) it instead.
///
/// ```compile_fail
/// let (_promise, future) = concurrent_futures::Promise::<u8>::new();
/// let copy = future.clone();
/// ```
///
/// And `result` consumes it, so the value cannot be taken twice:
///
/// ```compile_fail
/// let (_promise, future) = concurrent_futures::Promise::<u8>::new();
/// let a = future.result();
/// let b = future.result();
/// ```
#[must_use = "the task runs anyway; dropping its Future detaches it and discards the result (and any panic)"]
pub struct Future<T> {
    pub(crate) task: Arc<dyn Handle<T>>,
}

// A panic while a `Future` is held or borrowed cannot leave its task half-changed: every
// change is one atomic transition of the state word, or done under a lock (parking_lot's,
// which a panic releases) that runs no user code; callbacks run after it, each caught, and
// the value moves out once. So `catch_unwind` may take a closure that uses one, as it may
// with tokio's `JoinHandle`, which makes the same promise.
impl<T> std::panic::UnwindSafe for Future<T> {}
impl<T> std::panic::RefUnwindSafe for Future<T> {}

impl<T: Send + 'static> Future<T> {
    pub(crate) fn from_task(task: Arc<impl Handle<T> + 'static>) -> Future<T> {
        Future { task }
    }

    /// The current state.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{Promise, State};
    /// let (promise, future) = Promise::new();
    /// assert_eq!(future.state(), State::Pending);
    /// promise.set_result(1).unwrap();
    /// assert_eq!(future.state(), State::Finished);
    /// ```
    pub fn state(&self) -> State {
        self::core::state_of(self.task.word())
    }

    /// Attempts to cancel the task. Returns `false` if it is running or finished (it will
    /// complete), `true` if it is cancelled now or was already.
    ///
    /// Every waiter wakes at once: `result`, `wait`, `as_completed` and `.await` (CPython
    /// leaves some of them hanging: python/cpython#92001, #87893). The task's closure is
    /// dropped here, releasing what it captured.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{Promise, TaskError};
    /// let (_promise, future) = Promise::<u8>::new();
    /// assert!(future.cancel());
    /// assert!(future.cancelled());
    /// assert_eq!(future.result(), Err(TaskError::Cancelled));
    /// ```
    pub fn cancel(&self) -> bool {
        self.task.cancel(self)
    }

    /// Returns `true` if the future was cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_promise, future) = concurrent_futures::Promise::<u8>::new();
    /// assert!(!future.cancelled());
    /// future.cancel();
    /// assert!(future.cancelled());
    /// ```
    pub fn cancelled(&self) -> bool {
        self.state() == State::Cancelled
    }

    /// Returns `true` while a worker runs the task.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// let (promise, future) = Promise::<u8>::new();
    /// assert!(!future.running());
    /// assert!(promise.set_running_or_notify_cancel());
    /// assert!(future.running());
    /// # drop(promise);
    /// ```
    pub fn running(&self) -> bool {
        self.state() == State::Running
    }

    /// Returns `true` if the future finished or was cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let fut = pool.submit(|| 1)?;
    /// fut.wait();
    /// assert!(fut.done());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn done(&self) -> bool {
        self::core::is_done(self.task.word())
    }

    /// Blocks until the future is done.
    ///
    /// On a worker thread of the pool that owns this future, a still-queued task is run
    /// inline instead of waiting, so a pool never deadlocks on its own queue.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let fut = pool.submit(|| 1 + 1)?;
    /// fut.wait(); // without taking the value
    /// assert!(fut.done());
    /// assert_eq!(fut.result()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&self) {
        if !self.done() && !self::core::help(&*self.task, self) {
            self::core::block_until(&*self.task, None);
        }
    }

    /// Blocks until the future is done or `timeout` passes; returns whether it is done.
    /// A timeout does not cancel the task.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// # use std::time::Duration;
    /// let (_promise, future) = Promise::<u8>::new();
    /// assert!(!future.wait_timeout(Duration::from_millis(1)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(deadline_after(timeout))
    }

    /// Blocks until the future is done or `deadline` passes; returns whether it is done.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// # use std::time::{Duration, Instant};
    /// let (promise, future) = Promise::new();
    /// promise.set_result(()).unwrap();
    /// assert!(future.wait_deadline(Instant::now() + Duration::from_secs(1)));
    /// ```
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self::core::block_until(&*self.task, Some(deadline))
    }

    /// Blocks until the task is done and returns its value, moved out of the future.
    ///
    /// # Errors
    ///
    /// [`TaskError::Cancelled`] if it was cancelled, [`TaskError::Panicked`] if the task
    /// panicked (with the message), and the other [`TaskError`]s for failed promises and
    /// broken executors.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let v = pool.submit(|| vec![1, 2, 3])?.result()?;
    /// assert_eq!(v, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn result(self) -> Result<T, TaskError> {
        self.wait();
        self.task.take()
    }

    /// Like [`result`](Self::result), but gives up after `timeout`. A timeout does not
    /// cancel the task: the future comes back in the error, to wait again or cancel.
    ///
    /// # Errors
    ///
    /// [`ResultTimeoutError::Timeout`] with the future if it is not done in time;
    /// [`ResultTimeoutError::Failed`] if it is done without a value.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// # use std::time::Duration;
    /// let pool = ThreadPoolExecutor::new();
    /// let fut = pool.submit(|| 5)?;
    /// assert_eq!(fut.result_timeout(Duration::from_secs(10))?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn result_timeout(self, timeout: Duration) -> Result<T, ResultTimeoutError<T>> {
        self.result_deadline(deadline_after(timeout))
    }

    /// Like [`result_timeout`](Self::result_timeout) with a deadline.
    ///
    /// # Errors
    ///
    /// As [`result_timeout`](Self::result_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{Promise, ResultTimeoutError};
    /// # use std::time::Instant;
    /// let (_promise, future) = Promise::<u8>::new();
    /// let err = future.result_deadline(Instant::now()).unwrap_err();
    /// assert!(matches!(err, ResultTimeoutError::Timeout(_)));
    /// ```
    pub fn result_deadline(self, deadline: Instant) -> Result<T, ResultTimeoutError<T>> {
        if self.wait_deadline(deadline) {
            Ok(self.task.take()?)
        } else {
            Err(ResultTimeoutError::Timeout(self))
        }
    }

    /// Returns the value if the future is done, without blocking.
    ///
    /// # Errors
    ///
    /// [`TryResultError::NotDone`] with the future if it is not done;
    /// [`TryResultError::Failed`] if it is done without a value.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{Promise, TryResultError};
    /// let (promise, future) = Promise::new();
    /// let future = match future.try_result() {
    ///     Err(TryResultError::NotDone(f)) => f,
    ///     _ => unreachable!(),
    /// };
    /// promise.set_result("ok").unwrap();
    /// assert_eq!(future.try_result().unwrap(), "ok");
    /// ```
    pub fn try_result(self) -> Result<T, TryResultError<T>> {
        if self.done() {
            Ok(self.task.take()?)
        } else {
            Err(TryResultError::NotDone(self))
        }
    }

    /// Blocks until the future is done and returns its error, or `None` if it has a value
    /// (Python's `exception()`; a cancelled future gives [`TaskError::Cancelled`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let fut = pool.submit(|| -> u8 { panic!("oops") })?;
    /// assert_eq!(fut.exception().unwrap().panic_message(), Some("oops"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn exception(&self) -> Option<TaskError> {
        self.wait();
        self.task.error()
    }

    /// Like [`exception`](Self::exception), giving up after `timeout`: `Err(TimeoutError)` if
    /// the future is not done by then.
    ///
    /// # Errors
    ///
    /// [`TimeoutError`](crate::TimeoutError) if the future is not done in time.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// # use std::time::Duration;
    /// let (_promise, future) = Promise::<u8>::new();
    /// assert!(future.exception_timeout(Duration::ZERO).is_err());
    /// ```
    pub fn exception_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<TaskError>, crate::error::TimeoutError> {
        if self.wait_timeout(timeout) {
            Ok(self.task.error())
        } else {
            Err(crate::error::TimeoutError)
        }
    }

    /// Calls `callback` with this future when it is done.
    ///
    /// If the future is already done the callback runs at once, in this thread. Otherwise it
    /// runs exactly once, in the thread that completes or cancels the future, after every
    /// blocked waiter has been woken, in the order callbacks were added. A panic in a callback
    /// is caught and reported through the [`log`] facade (target `concurrent_futures`); the
    /// other callbacks still run.
    ///
    /// The callback gets `&Future<T>`: it can read the state and [`exception`](Self::exception),
    /// not move the value out (that belongs to the owner). To read the value in callbacks,
    /// use a [`SharedFuture`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// use std::sync::mpsc;
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let (tx, rx) = mpsc::channel();
    /// let fut = pool.submit(|| 2 + 2)?;
    /// fut.add_done_callback(move |f| tx.send(f.state()).unwrap());
    /// assert_eq!(rx.recv()?, concurrent_futures::State::Finished);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_done_callback(&self, callback: impl FnOnce(&Future<T>) + Send + 'static) {
        if let Err(Waiter::Callback(callback)) =
            self.task.add_waiter(Waiter::Callback(Box::new(callback)))
        {
            self::core::run_callback(callback, self);
        }
    }

    /// Calls `callback` with the task's outcome when it is done: Python's
    /// `add_done_callback(lambda f: use(f.result()))`, with the value moved into the
    /// callback. It takes the handle, since the value has one owner; to read it from several
    /// callbacks, [`share`](Self::share) the future and use
    /// [`SharedFuture::add_done_callback`] instead.
    ///
    /// Runs where [`add_done_callback`](Self::add_done_callback) runs its callbacks: at once
    /// if the future is done, else in the thread that completes or cancels it (for a
    /// process pool, one of the pool's callback threads).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{TaskError, ThreadPoolExecutor};
    /// use std::sync::mpsc;
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let (tx, rx) = mpsc::channel();
    /// let page = pool.submit(|| String::from("<html>"))?;
    /// let tx2 = tx.clone();
    /// page.on_result(move |r| tx2.send(r.map(|html| html.len())).unwrap());
    /// let broken = pool.submit(|| -> usize { panic!("404") })?;
    /// broken.on_result(move |r| tx.send(r).unwrap());
    /// let mut got = vec![rx.recv()?, rx.recv()?];
    /// got.sort_by_key(|r| r.is_err());
    /// assert_eq!(got[0], Ok(6));
    /// assert!(matches!(&got[1], Err(TaskError::Panicked(m)) if &**m == "404"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_result(self, callback: impl FnOnce(Result<T, TaskError>) + Send + 'static) {
        // Registered through a second handle; the owner rides in the callback and takes
        // the value when it runs (callbacks run after the task's lock is released).
        let handle = Future {
            task: self.task.clone(),
        };
        handle.add_done_callback(move |_| callback(self.result()));
    }

    /// Turns this handle into a clonable [`SharedFuture`] that hands out `&T`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let shared = pool.submit(|| String::from("page"))?.share();
    /// let other = shared.clone();
    /// assert_eq!(shared.result()?, "page");
    /// assert_eq!(other.result()?, "page"); // the same value, not a clone
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn share(self) -> SharedFuture<T> {
        SharedFuture::new(self)
    }

    /// Registers a collector to be told `key` when the future is done. False if the future
    /// is already done (nothing is registered).
    pub(crate) fn watch(&self, collector: &Arc<Collector>, key: usize) -> bool {
        self.task
            .add_waiter(Waiter::Collector(collector.clone(), key))
            .is_ok()
    }

    pub(crate) fn unwatch(&self, collector: &Arc<Collector>) {
        self.task
            .remove_waiters(&|w| matches!(w, Waiter::Collector(c, _) if Arc::ptr_eq(c, collector)));
    }

    /// Done with an error (`wait`'s `FIRST_EXCEPTION`); a cancelled future is not, as in
    /// Python. Final once true.
    pub(crate) fn failed(&self) -> bool {
        self::core::failed(self.task.word())
    }

    /// A handle that does not keep the task alive (a scope's list of queued tasks).
    pub(crate) fn downgrade(&self) -> WeakFuture<T> {
        WeakFuture(Arc::downgrade(&self.task))
    }

    /// Runs the task inline if this thread is a worker of its pool and it is still queued.
    pub(crate) fn help(&self) -> bool {
        self::core::help(&*self.task, self)
    }

    fn addr(&self) -> *const () {
        Arc::as_ptr(&self.task) as *const ()
    }
}

/// A [`Future`] that does not keep its task alive.
pub(crate) struct WeakFuture<T>(std::sync::Weak<dyn Handle<T>>);

impl<T: Send + 'static> WeakFuture<T> {
    /// The future, while its task is alive.
    pub(crate) fn upgrade(&self) -> Option<Future<T>> {
        self.0.upgrade().map(|task| Future { task })
    }
}

pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    // A timeout too large to add is as good as none: about 30 years out.
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(60 * 60 * 24 * 365 * 30))
}

impl<U, E> Future<Result<U, E>>
where
    U: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    /// Like [`result`](Self::result) for a task that returns a `Result`: its own error
    /// becomes [`TaskError::Failed`], so one `?` (or one `match`) handles every way the task
    /// can fail, as one `except` does in Python. The error itself stays reachable with
    /// [`TaskError::failure`] (to downcast) and its causes as `source()`.
    ///
    /// # Errors
    ///
    /// The task's own error as [`TaskError::Failed`]; otherwise as [`result`](Self::result).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{TaskError, ThreadPoolExecutor};
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let ok = pool.submit(|| "42".parse::<u32>())?;
    /// assert_eq!(ok.result_flat()?, 42); // not Ok(Ok(42))
    /// let bad = pool.submit(|| "4x2".parse::<u32>())?;
    /// let err = bad.result_flat().unwrap_err();
    /// assert!(matches!(err, TaskError::Failed(_)));
    /// assert_eq!(err.to_string(), "invalid digit found in string");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn result_flat(self) -> Result<U, TaskError> {
        self.result()?.map_err(|e| TaskError::Failed(Arc::new(e)))
    }
}

impl<T: Send + 'static> std::future::Future for Future<T> {
    type Output = Result<T, TaskError>;

    /// Resolves when the task is done, without blocking a thread.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.done() && self.task.register_waker(cx.waker()) {
            return Poll::Pending;
        }
        Poll::Ready(self.task.take())
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.task.word();
        f.debug_struct("Future")
            .field("state", &self::core::state_of(word))
            .finish_non_exhaustive()
    }
}

impl<T> PartialEq for Future<T> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(
            Arc::as_ptr(&self.task) as *const (),
            Arc::as_ptr(&other.task) as *const (),
        )
    }
}

impl<T> Eq for Future<T> {}

impl<T> Hash for Future<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.task) as *const () as usize).hash(state);
    }
}

impl<T: Send + 'static> Future<T> {
    /// A stable identity for logs and maps (the address of the task).
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// let (_p, a) = Promise::<()>::new();
    /// let (_q, b) = Promise::<()>::new();
    /// assert_ne!(a.id(), b.id());
    /// ```
    pub fn id(&self) -> usize {
        self.addr() as usize
    }
}
