//! [`Semaphore`] and [`BoundedSemaphore`]: counted permits, released by guards.

use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::TimeoutError;
use crate::future::deadline_after;

/// [`BoundedSemaphore::release`] would raise the count above its initial value.
///
/// # Examples
///
/// ```
/// use concurrent_futures::lock::{BoundedSemaphore, OverReleaseError};
///
/// let sem = BoundedSemaphore::new(1);
/// assert_eq!(sem.release(1), Err(OverReleaseError));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("semaphore released too many times")]
pub struct OverReleaseError;

/// The shared machinery: a count, its upper bound, and a condition variable.
struct Counter {
    count: Mutex<usize>,
    cv: Condvar,
    bound: Option<usize>,
}

impl Counter {
    fn acquire(&self, deadline: Option<Instant>) -> bool {
        let mut count = self.count.lock();
        while *count == 0 {
            match deadline {
                None => self.cv.wait(&mut count),
                Some(deadline) => {
                    if self.cv.wait_until(&mut count, deadline).timed_out() && *count == 0 {
                        return false;
                    }
                }
            }
        }
        *count -= 1;
        true
    }

    fn try_acquire(&self) -> bool {
        let mut count = self.count.lock();
        if *count == 0 {
            return false;
        }
        *count -= 1;
        true
    }

    fn permit(&self) -> SemaphorePermit<'_> {
        self.acquire(None);
        SemaphorePermit { counter: self }
    }

    fn try_permit(&self) -> Option<SemaphorePermit<'_>> {
        // `then`, not `then_some`: a permit built eagerly would release on drop.
        self.try_acquire()
            .then(|| SemaphorePermit { counter: self })
    }

    fn permit_timeout(&self, timeout: Duration) -> Result<SemaphorePermit<'_>, TimeoutError> {
        if self.acquire(Some(deadline_after(timeout))) {
            Ok(SemaphorePermit { counter: self })
        } else {
            Err(TimeoutError)
        }
    }

    fn release(&self, n: usize) -> Result<(), OverReleaseError> {
        let mut count = self.count.lock();
        let new = count.checked_add(n).ok_or(OverReleaseError)?;
        if self.bound.is_some_and(|bound| new > bound) {
            return Err(OverReleaseError);
        }
        *count = new;
        drop(count);
        for _ in 0..n {
            if !self.cv.notify_one() {
                break;
            }
        }
        Ok(())
    }
}

/// A counter of permits: Python's `threading.Semaphore`. Acquiring takes a permit (waiting
/// while none is left) and returns a [`SemaphorePermit`] that gives it back when dropped.
///
/// # Examples
///
/// ```
/// use concurrent_futures::lock::Semaphore;
/// use concurrent_futures::ThreadPoolExecutor;
/// use std::sync::Arc;
///
/// // At most 2 of the 8 workers talk to the server at once.
/// let connections = Arc::new(Semaphore::new(2));
/// let pool = ThreadPoolExecutor::builder().max_workers(8).build()?;
/// for _ in 0..16 {
///     let connections = connections.clone();
///     pool.submit(move || {
///         let _permit = connections.acquire();
///         // ... use one connection ...
///     })?;
/// }
/// pool.shutdown();
/// assert_eq!(connections.available(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Semaphore {
    counter: Counter,
}

/// A permit from a [`Semaphore`] or [`BoundedSemaphore`]; released when dropped.
///
/// # Examples
///
/// ```
/// let s = concurrent_futures::lock::Semaphore::new(1);
/// let permit = s.acquire();
/// assert_eq!(s.available(), 0);
/// drop(permit);
/// assert_eq!(s.available(), 1);
/// ```
#[must_use = "if unused the permit is released at once"]
pub struct SemaphorePermit<'a> {
    counter: &'a Counter,
}

impl SemaphorePermit<'_> {
    /// Keeps the permit taken: it is not released on drop (release it later by hand).
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = concurrent_futures::lock::Semaphore::new(1);
    /// sem.acquire().forget();
    /// assert_eq!(sem.available(), 0);
    /// sem.release(1);
    /// assert_eq!(sem.available(), 1);
    /// ```
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        if self.counter.release(1).is_err() {
            // Only possible if a bounded semaphore was also released by hand while this
            // permit was out: the count is at its bound already.
            log::warn!(target: "concurrent_futures", "semaphore permit dropped after an extra release");
        }
    }
}

impl Semaphore {
    /// A semaphore with `permits` permits.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = concurrent_futures::lock::Semaphore::new(3);
    /// assert_eq!(sem.available(), 3);
    /// ```
    pub fn new(permits: usize) -> Self {
        Semaphore {
            counter: Counter {
                count: Mutex::new(permits),
                cv: Condvar::new(),
                bound: None,
            },
        }
    }

    /// Waits for a permit (Python: `acquire()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let slots = concurrent_futures::lock::Semaphore::new(2);
    /// let a = slots.acquire();
    /// let _b = slots.acquire();
    /// assert!(slots.try_acquire().is_none()); // both taken
    /// drop(a); // the permit goes back on drop
    /// assert!(slots.try_acquire().is_some());
    /// ```
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        self.counter.permit()
    }

    /// Takes a permit if one is free (Python: `acquire(blocking=False)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = concurrent_futures::lock::Semaphore::new(1);
    /// let p = sem.try_acquire().unwrap();
    /// assert!(sem.try_acquire().is_none());
    /// # drop(p);
    /// ```
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.counter.try_permit()
    }

    /// Waits at most `timeout` for a permit (Python: `acquire(timeout=t)`).
    ///
    /// # Errors
    ///
    /// [`TimeoutError`] if no permit was freed in time.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let sem = concurrent_futures::lock::Semaphore::new(0);
    /// assert!(sem.acquire_timeout(Duration::from_millis(1)).is_err());
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphorePermit<'_>, TimeoutError> {
        self.counter.permit_timeout(timeout)
    }

    /// Adds `n` permits, waking up to `n` waiters (Python: `release(n)`).
    ///
    /// # Panics
    ///
    /// If the count would overflow `usize`.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = concurrent_futures::lock::Semaphore::new(0);
    /// sem.release(2);
    /// assert_eq!(sem.available(), 2);
    /// ```
    pub fn release(&self, n: usize) {
        self.counter
            .release(n)
            .expect("semaphore count overflowed usize");
    }

    /// Permits free now.
    ///
    /// # Examples
    ///
    /// ```
    /// let slots = concurrent_futures::lock::Semaphore::new(3);
    /// let _p = slots.acquire();
    /// assert_eq!(slots.available(), 2);
    /// ```
    pub fn available(&self) -> usize {
        *self.counter.count.lock()
    }
}

/// A [`Semaphore`] that refuses to be released above its initial count: Python's
/// `threading.BoundedSemaphore`, which catches a release without a matching acquire.
///
/// # Examples
///
/// ```
/// use concurrent_futures::lock::BoundedSemaphore;
///
/// let sem = BoundedSemaphore::new(2);
/// sem.acquire().forget();
/// assert_eq!(sem.release(1), Ok(()));
/// assert!(sem.release(1).is_err()); // one more than was acquired
/// ```
pub struct BoundedSemaphore {
    counter: Counter,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `permits` permits, which is also its ceiling.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = concurrent_futures::lock::BoundedSemaphore::new(1);
    /// assert_eq!(b.available(), 1);
    /// ```
    pub fn new(permits: usize) -> Self {
        BoundedSemaphore {
            counter: Counter {
                count: Mutex::new(permits),
                cv: Condvar::new(),
                bound: Some(permits),
            },
        }
    }

    /// Waits for a permit.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = concurrent_futures::lock::BoundedSemaphore::new(1);
    /// let _p = sem.acquire();
    /// assert_eq!(sem.available(), 0);
    /// ```
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        self.counter.permit()
    }

    /// Takes a permit if one is free.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = concurrent_futures::lock::BoundedSemaphore::new(0);
    /// assert!(sem.try_acquire().is_none());
    /// ```
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.counter.try_permit()
    }

    /// Waits at most `timeout` for a permit.
    ///
    /// # Errors
    ///
    /// [`TimeoutError`] if no permit was freed in time.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let sem = concurrent_futures::lock::BoundedSemaphore::new(1);
    /// assert!(sem.acquire_timeout(Duration::from_millis(1)).is_ok());
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphorePermit<'_>, TimeoutError> {
        self.counter.permit_timeout(timeout)
    }

    /// Gives back `n` permits taken with [`SemaphorePermit::forget`].
    ///
    /// # Errors
    ///
    /// [`OverReleaseError`] if that would exceed the initial count (nothing is released).
    ///
    /// # Examples
    ///
    /// ```
    /// let b = concurrent_futures::lock::BoundedSemaphore::new(1);
    /// b.acquire().forget(); // keep the permit past the guard
    /// assert!(b.release(1).is_ok());
    /// assert!(b.release(1).is_err()); // more than it started with
    /// ```
    pub fn release(&self, n: usize) -> Result<(), OverReleaseError> {
        self.counter.release(n)
    }

    /// Permits free now.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(concurrent_futures::lock::BoundedSemaphore::new(4).available(), 4);
    /// ```
    pub fn available(&self) -> usize {
        *self.counter.count.lock()
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available", &self.available())
            .finish()
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("available", &self.available())
            .field("bound", &self.counter.bound)
            .finish()
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SemaphorePermit")
    }
}
