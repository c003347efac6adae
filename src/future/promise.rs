//! [`Promise`]: the completing side of a stand-alone [`Future`], for executor authors and tests.

use std::fmt;
use std::sync::Arc;

use super::InvalidStateError;
use super::core::{Handle, Promised, Task};
use super::{Future, State};
use crate::error::TaskError;

/// The writing end of a [`Future`] that no executor runs: Python's bare `Future()` with
/// `set_result`, `set_exception` and `set_running_or_notify_cancel`.
///
/// Dropping a promise that was never completed finishes its future with
/// [`TaskError::Abandoned`], so no waiter hangs on a promise nobody will keep.
///
/// # Examples
///
/// ```
/// use concurrent_futures::Promise;
/// use std::thread;
///
/// let (promise, future) = Promise::new();
/// thread::spawn(move || {
///     if promise.set_running_or_notify_cancel() {
///         promise.set_result(6 * 7).unwrap();
///     }
/// });
/// assert_eq!(future.result()?, 42);
/// # Ok::<(), concurrent_futures::TaskError>(())
/// ```
pub struct Promise<T: Send + 'static> {
    task: Arc<Task<T, Promised>>,
}

impl<T: Send + 'static> Promise<T> {
    /// Creates a pending future and the promise that completes it.
    ///
    /// # Examples
    ///
    /// ```
    /// let (promise, future) = concurrent_futures::Promise::new();
    /// assert!(!future.done());
    /// promise.set_result(3).unwrap();
    /// assert_eq!(future.result().unwrap(), 3);
    /// ```
    pub fn new() -> (Promise<T>, Future<T>) {
        let task = Task::new(Promised, 0);
        let future = Future::from_task(task.clone());
        (Promise { task }, future)
    }

    fn future(&self) -> Future<T> {
        Future::from_task(self.task.clone())
    }

    /// The identity of the future: what [`Future::id`] returns for it.
    #[cfg(all(unix, feature = "process"))]
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.task).cast::<()>() as usize
    }

    /// Marks the future running unless it was cancelled: `true` if it is now running (or
    /// already was), `false` if it was cancelled or is already finished. After `true` the
    /// future can no longer be cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// let (promise, future) = Promise::<()>::new();
    /// future.cancel();
    /// assert!(!promise.set_running_or_notify_cancel());
    /// ```
    pub fn set_running_or_notify_cancel(&self) -> bool {
        self.task.set_running() || self.state() == State::Running
    }

    /// Completes the future with `value`, waking its waiters and running its callbacks.
    ///
    /// # Errors
    ///
    /// [`InvalidStateError`] with the value if the future is already finished or cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// let (promise, future) = Promise::new();
    /// promise.set_result("done").unwrap();
    /// assert_eq!(future.result().unwrap(), "done");
    /// ```
    pub fn set_result(&self, value: T) -> Result<(), InvalidStateError<T>> {
        self.task
            .finish(Ok(value), &self.future())
            .map_err(|outcome| match outcome {
                Ok(value) => InvalidStateError {
                    state: self.state(),
                    value,
                },
                Err(_) => unreachable!("finish gives back the outcome it was passed"),
            })
    }

    /// Completes the future with an error (Python's `set_exception`); its result is
    /// [`TaskError::Failed`].
    ///
    /// # Errors
    ///
    /// [`InvalidStateError`] with the error if the future is already finished or cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{Promise, TaskError};
    /// let (promise, future) = Promise::<u8>::new();
    /// promise.set_exception("disk full").unwrap();
    /// let err = future.result().unwrap_err();
    /// assert!(matches!(err, TaskError::Failed(_)));
    /// assert_eq!(err.to_string(), "disk full");
    /// ```
    pub fn set_exception(
        &self,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<(), InvalidStateError<TaskError>> {
        self.set_error(TaskError::Failed(Arc::from(error.into())))
    }

    /// Completes the future with any [`TaskError`], for executors that report panics or
    /// breakage themselves.
    ///
    /// # Errors
    ///
    /// [`InvalidStateError`] with the error if the future is already finished or cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{Promise, TaskError};
    /// let (promise, future) = Promise::<u8>::new();
    /// promise.set_error(TaskError::Panicked("worker died".into())).unwrap();
    /// assert!(future.result().unwrap_err().is_panic());
    /// ```
    pub fn set_error(&self, error: TaskError) -> Result<(), InvalidStateError<TaskError>> {
        self.task
            .finish(Err(error), &self.future())
            .map_err(|outcome| match outcome {
                Err(value) => InvalidStateError {
                    state: self.state(),
                    value,
                },
                Ok(_) => unreachable!("finish gives back the outcome it was passed"),
            })
    }

    /// Cancels the future if it has not started (Python's `Future.cancel()` from the
    /// executor's side): true if it is cancelled now or was already.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{Promise, TaskError};
    /// let (promise, future) = Promise::<u8>::new();
    /// assert!(promise.cancel());
    /// assert_eq!(future.result(), Err(TaskError::Cancelled));
    /// ```
    pub fn cancel(&self) -> bool {
        self.task.cancel(&self.future())
    }

    /// The future's state.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{Promise, State};
    /// let (promise, _future) = Promise::<u8>::new();
    /// assert_eq!(promise.state(), State::Pending);
    /// ```
    pub fn state(&self) -> State {
        super::core::state_of(self.task.word())
    }

    /// Returns `true` if the future was cancelled, so the work need not be done.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::Promise;
    /// let (promise, future) = Promise::<u8>::new();
    /// future.cancel();
    /// assert!(promise.cancelled());
    /// ```
    pub fn cancelled(&self) -> bool {
        self.state() == State::Cancelled
    }
}

impl<T: Send + 'static> Drop for Promise<T> {
    fn drop(&mut self) {
        if !super::core::is_done(self.task.word()) {
            let _ = self.task.finish(Err(TaskError::Abandoned), &self.future());
        }
    }
}

impl<T: Send + 'static> fmt::Debug for Promise<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Promise")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}
