//! The errors of a future's own state: a value it cannot take ([`InvalidStateError`]), a
//! wait that gave up ([`ResultTimeoutError`]) or found nothing yet ([`TryResultError`]).
//! Each hands back what it could not use. Here, beside `Future`, so that `error.rs` (what a
//! task or a submit can fail with) needs nothing from `future/`.

use std::fmt;

use super::{Future, State};
use crate::error::TaskError;

/// A [`Promise`](crate::Promise) was completed twice; the refused value comes back.
///
/// Python raises `InvalidStateError` from `set_result` on a done future.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Promise, State};
///
/// let (promise, future) = Promise::new();
/// promise.set_result(1).unwrap();
/// let err = promise.set_result(2).unwrap_err();
/// assert_eq!(err.state(), State::Finished);
/// assert_eq!(err.into_inner(), 2);
/// assert_eq!(future.result()?, 1);
/// # Ok::<(), concurrent_futures::TaskError>(())
/// ```
#[derive(thiserror::Error)]
#[error("future is already {state}")]
pub struct InvalidStateError<V> {
    pub(crate) state: State,
    pub(crate) value: V,
}

impl<V> InvalidStateError<V> {
    /// The state the future was in.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{Promise, State};
    /// let (p, _f) = Promise::new();
    /// p.cancel();
    /// assert_eq!(p.set_result(1).unwrap_err().state(), State::Cancelled);
    /// ```
    pub fn state(&self) -> State {
        self.state
    }

    /// The value that was not stored.
    ///
    /// # Examples
    ///
    /// ```
    /// let (p, _f) = concurrent_futures::Promise::new();
    /// p.set_result("first").unwrap();
    /// assert_eq!(p.set_result("second").unwrap_err().into_inner(), "second");
    /// ```
    pub fn into_inner(self) -> V {
        self.value
    }
}

impl<V> fmt::Debug for InvalidStateError<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidStateError")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// [`Future::result_timeout`] gave up; a timeout hands the future back.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Promise, ResultTimeoutError};
/// use std::time::Duration;
///
/// let (promise, future) = Promise::<u8>::new();
/// let future = match future.result_timeout(Duration::from_millis(1)) {
///     Err(ResultTimeoutError::Timeout(future)) => future, // still pending, still ours
///     other => panic!("unexpected {other:?}"),
/// };
/// promise.set_result(7).unwrap();
/// assert_eq!(future.result()?, 7);
/// # Ok::<(), concurrent_futures::TaskError>(())
/// ```
#[derive(thiserror::Error)]
pub enum ResultTimeoutError<T> {
    /// The future was not done in time; here it is back. The task was not cancelled.
    #[error("timed out waiting for the result")]
    Timeout(Future<T>),
    /// The future is done without a value.
    #[error(transparent)]
    Failed(#[from] TaskError),
}

impl<T> fmt::Debug for ResultTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResultTimeoutError::Timeout(fut) => f.debug_tuple("Timeout").field(fut).finish(),
            ResultTimeoutError::Failed(err) => f.debug_tuple("Failed").field(err).finish(),
        }
    }
}

/// [`Future::try_result`] found no result yet; the future comes back.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Promise, TryResultError};
///
/// let (promise, future) = Promise::<u8>::new();
/// let future = match future.try_result() {
///     Err(TryResultError::NotDone(future)) => future,
///     other => panic!("unexpected {other:?}"),
/// };
/// drop(promise);
/// assert!(matches!(future.try_result(), Err(TryResultError::Failed(_))));
/// ```
#[derive(thiserror::Error)]
pub enum TryResultError<T> {
    /// The future is not done; here it is back.
    #[error("future is not done yet")]
    NotDone(Future<T>),
    /// The future is done without a value.
    #[error(transparent)]
    Failed(#[from] TaskError),
}

impl<T> fmt::Debug for TryResultError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryResultError::NotDone(fut) => f.debug_tuple("NotDone").field(fut).finish(),
            TryResultError::Failed(err) => f.debug_tuple("Failed").field(err).finish(),
        }
    }
}
