//! [`Lock`] and [`RLock`]: mutual exclusion over owned state.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::error::TimeoutError;

/// A mutex that owns the state it guards: Python's `threading.Lock`, with the data inside.
///
/// # Examples
///
/// ```
/// use concurrent_futures::lock::Lock;
/// use concurrent_futures::ThreadPoolExecutor;
/// use std::sync::Arc;
///
/// let hits = Arc::new(Lock::new(Vec::new()));
/// let pool = ThreadPoolExecutor::new();
/// for i in 0..4 {
///     let hits = hits.clone();
///     pool.submit(move || hits.lock().push(i))?;
/// }
/// pool.shutdown();
/// assert_eq!(hits.with(|v| v.len()), 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct Lock<T: ?Sized> {
    inner: parking_lot::Mutex<T>,
}

/// Access to a [`Lock`]'s state; unlocks when dropped.
///
/// # Examples
///
/// ```
/// let counter = concurrent_futures::lock::Lock::new(0);
/// {
///     let mut guard = counter.lock();
///     *guard += 1;
/// } // unlocked here
/// assert_eq!(*counter.lock(), 1);
/// ```
#[must_use = "if unused the Lock will immediately unlock"]
pub struct LockGuard<'a, T: ?Sized> {
    pub(super) inner: parking_lot::MutexGuard<'a, T>,
}

impl<T> Lock<T> {
    /// A lock around `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = concurrent_futures::lock::Lock::new(1);
    /// assert_eq!(*lock.lock(), 1);
    /// ```
    pub const fn new(value: T) -> Self {
        Lock {
            inner: parking_lot::const_mutex(value),
        }
    }

    /// Consumes the lock and returns the state.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = concurrent_futures::lock::Lock::new("x");
    /// assert_eq!(lock.into_inner(), "x");
    /// ```
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> Lock<T> {
    /// Blocks until the lock is free and returns a guard (Python: `acquire()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = concurrent_futures::lock::Lock::new(0);
    /// *lock.lock() += 5;
    /// assert_eq!(*lock.lock(), 5);
    /// ```
    pub fn lock(&self) -> LockGuard<'_, T> {
        LockGuard {
            inner: self.inner.lock(),
        }
    }

    /// Takes the lock if it is free (Python: `acquire(blocking=False)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = concurrent_futures::lock::Lock::new(());
    /// let held = lock.lock();
    /// assert!(lock.try_lock().is_none());
    /// drop(held);
    /// assert!(lock.try_lock().is_some());
    /// ```
    pub fn try_lock(&self) -> Option<LockGuard<'_, T>> {
        self.inner.try_lock().map(|inner| LockGuard { inner })
    }

    /// Waits at most `timeout` for the lock (Python: `acquire(timeout=t)`).
    ///
    /// # Errors
    ///
    /// [`TimeoutError`] if the lock was not free in time.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let lock = concurrent_futures::lock::Lock::new(());
    /// let _held = lock.lock();
    /// assert!(lock.lock_timeout(Duration::from_millis(1)).is_err());
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Result<LockGuard<'_, T>, TimeoutError> {
        self.inner
            .try_lock_for(timeout)
            .map(|inner| LockGuard { inner })
            .ok_or(TimeoutError)
    }

    /// Waits until `deadline` for the lock.
    ///
    /// # Errors
    ///
    /// [`TimeoutError`] if the lock was not free in time.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Instant;
    /// let lock = concurrent_futures::lock::Lock::new(());
    /// assert!(lock.lock_deadline(Instant::now()).is_ok()); // free: no wait needed
    /// ```
    pub fn lock_deadline(&self, deadline: Instant) -> Result<LockGuard<'_, T>, TimeoutError> {
        self.inner
            .try_lock_until(deadline)
            .map(|inner| LockGuard { inner })
            .ok_or(TimeoutError)
    }

    /// Runs `f` with the lock held and returns its result (Python: `with lock: ...`).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = concurrent_futures::lock::Lock::new(vec![1]);
    /// let len = lock.with(|v| { v.push(2); v.len() });
    /// assert_eq!(len, 2);
    /// ```
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock())
    }

    /// Returns `true` if some thread holds the lock now (Python: `locked()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = concurrent_futures::lock::Lock::new(());
    /// let g = lock.lock();
    /// assert!(lock.is_locked());
    /// # drop(g);
    /// ```
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// Mutable access without locking, through a unique reference.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut lock = concurrent_futures::lock::Lock::new(1);
    /// *lock.get_mut() = 2;
    /// assert_eq!(*lock.lock(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: ?Sized> Deref for LockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized> DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Lock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for LockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A re-entrant lock: the thread that holds it may lock it again (Python's `threading.RLock`).
///
/// Because one thread can hold several guards at once, guards give shared access (`&T`);
/// put a `Cell` or `RefCell` inside for mutation, as with `std`'s reentrant patterns.
///
/// # Examples
///
/// ```
/// use concurrent_futures::lock::RLock;
/// use std::cell::Cell;
///
/// let depth = RLock::new(Cell::new(0));
/// fn enter(lock: &RLock<Cell<u32>>, n: u32) {
///     let guard = lock.lock();          // re-entered by the recursion, no deadlock
///     guard.set(guard.get() + 1);
///     if n > 0 { enter(lock, n - 1) }
/// }
/// enter(&depth, 3);
/// assert_eq!(depth.lock().get(), 4);
/// ```
#[derive(Default)]
pub struct RLock<T: ?Sized> {
    inner: parking_lot::ReentrantMutex<T>,
}

/// Shared access to an [`RLock`]'s state; releases one level when dropped.
///
/// # Examples
///
/// ```
/// let r = concurrent_futures::lock::RLock::new(5);
/// let outer = r.lock();
/// let inner = r.lock(); // the same thread may take it again
/// assert_eq!(*outer + *inner, 10);
/// ```
#[must_use = "if unused the RLock will immediately unlock"]
pub struct RLockGuard<'a, T: ?Sized> {
    inner: parking_lot::ReentrantMutexGuard<'a, T>,
}

impl<T> RLock<T> {
    /// A re-entrant lock around `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = concurrent_futures::lock::RLock::new(5);
    /// assert_eq!(*lock.lock(), 5);
    /// ```
    pub const fn new(value: T) -> Self {
        RLock {
            inner: parking_lot::const_reentrant_mutex(value),
        }
    }

    /// Consumes the lock and returns the state.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(concurrent_futures::lock::RLock::new(1).into_inner(), 1);
    /// ```
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> RLock<T> {
    /// Blocks until this thread holds the lock (at once if it already does).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = concurrent_futures::lock::RLock::new(());
    /// let a = lock.lock();
    /// let b = lock.lock(); // same thread: fine
    /// # drop((a, b));
    /// ```
    pub fn lock(&self) -> RLockGuard<'_, T> {
        RLockGuard {
            inner: self.inner.lock(),
        }
    }

    /// Takes the lock if it is free or already held by this thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = concurrent_futures::lock::RLock::new(());
    /// assert!(lock.try_lock().is_some());
    /// ```
    pub fn try_lock(&self) -> Option<RLockGuard<'_, T>> {
        self.inner.try_lock().map(|inner| RLockGuard { inner })
    }

    /// Waits at most `timeout` for the lock.
    ///
    /// # Errors
    ///
    /// [`TimeoutError`] if another thread held it throughout.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let lock = concurrent_futures::lock::RLock::new(());
    /// assert!(lock.lock_timeout(Duration::from_millis(1)).is_ok());
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_, T>, TimeoutError> {
        self.inner
            .try_lock_for(timeout)
            .map(|inner| RLockGuard { inner })
            .ok_or(TimeoutError)
    }

    /// Runs `f` with the lock held.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = concurrent_futures::lock::RLock::new(2);
    /// assert_eq!(lock.with(|n| n * 2), 4);
    /// ```
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.lock())
    }

    /// Returns `true` if some thread holds the lock now.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = concurrent_futures::lock::RLock::new(());
    /// assert!(!lock.is_locked());
    /// ```
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }
}

impl<T: ?Sized> Deref for RLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
