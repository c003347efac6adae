//! [`RwLock`]: many readers or one writer.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::error::TimeoutError;

/// Many readers or one writer over owned state. Python has no reader-writer lock; this is
/// the one Rust code reaches for when reads dominate.
///
/// # Examples
///
/// ```
/// use concurrent_futures::lock::RwLock;
///
/// let config = RwLock::new(String::from("v1"));
/// {
///     let a = config.read();
///     let b = config.read(); // readers share
///     assert_eq!(*a, *b);
/// }
/// config.write().push_str("-patched");
/// assert_eq!(*config.read(), "v1-patched");
/// ```
#[derive(Default)]
pub struct RwLock<T: ?Sized> {
    inner: parking_lot::RwLock<T>,
}

/// Shared access to an [`RwLock`]'s state.
///
/// # Examples
///
/// ```
/// let table = concurrent_futures::lock::RwLock::new(vec![1, 2]);
/// let view = table.read();
/// assert_eq!(view.len(), 2);
/// ```
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    inner: parking_lot::RwLockReadGuard<'a, T>,
}

/// Exclusive access to an [`RwLock`]'s state.
///
/// # Examples
///
/// ```
/// let table = concurrent_futures::lock::RwLock::new(vec![1, 2]);
/// table.write().push(3);
/// assert_eq!(table.read().len(), 3);
/// ```
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    inner: parking_lot::RwLockWriteGuard<'a, T>,
}

impl<T> RwLock<T> {
    /// A reader-writer lock around `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = concurrent_futures::lock::RwLock::new(1);
    /// assert_eq!(*lock.read(), 1);
    /// ```
    pub const fn new(value: T) -> Self {
        RwLock {
            inner: parking_lot::const_rwlock(value),
        }
    }

    /// Consumes the lock and returns the state.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(concurrent_futures::lock::RwLock::new(3).into_inner(), 3);
    /// ```
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Blocks until no writer holds the lock and returns a shared guard.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = concurrent_futures::lock::RwLock::new(String::from("v1"));
    /// let a = config.read();
    /// let b = config.read(); // readers share the lock
    /// assert_eq!((a.as_str(), b.as_str()), ("v1", "v1"));
    /// ```
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        RwLockReadGuard {
            inner: self.inner.read(),
        }
    }

    /// Blocks until the lock is free and returns an exclusive guard.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = concurrent_futures::lock::RwLock::new(String::from("v1"));
    /// config.write().push_str("+patch");
    /// assert_eq!(*config.read(), "v1+patch");
    /// ```
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        RwLockWriteGuard {
            inner: self.inner.write(),
        }
    }

    /// A shared guard if no writer holds the lock now.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = concurrent_futures::lock::RwLock::new(());
    /// let w = lock.write();
    /// assert!(lock.try_read().is_none());
    /// # drop(w);
    /// ```
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        self.inner.try_read().map(|inner| RwLockReadGuard { inner })
    }

    /// An exclusive guard if the lock is free now.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = concurrent_futures::lock::RwLock::new(());
    /// let r = lock.read();
    /// assert!(lock.try_write().is_none());
    /// # drop(r);
    /// ```
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        self.inner
            .try_write()
            .map(|inner| RwLockWriteGuard { inner })
    }

    /// Waits at most `timeout` for shared access.
    ///
    /// # Errors
    ///
    /// [`TimeoutError`] if a writer held the lock throughout.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let lock = concurrent_futures::lock::RwLock::new(());
    /// let _w = lock.write();
    /// assert!(lock.read_timeout(Duration::from_millis(1)).is_err());
    /// ```
    pub fn read_timeout(&self, timeout: Duration) -> Result<RwLockReadGuard<'_, T>, TimeoutError> {
        self.inner
            .try_read_for(timeout)
            .map(|inner| RwLockReadGuard { inner })
            .ok_or(TimeoutError)
    }

    /// Waits at most `timeout` for exclusive access.
    ///
    /// # Errors
    ///
    /// [`TimeoutError`] if the lock was not free in time.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let lock = concurrent_futures::lock::RwLock::new(());
    /// let _r = lock.read();
    /// assert!(lock.write_timeout(Duration::from_millis(1)).is_err());
    /// ```
    pub fn write_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RwLockWriteGuard<'_, T>, TimeoutError> {
        self.inner
            .try_write_for(timeout)
            .map(|inner| RwLockWriteGuard { inner })
            .ok_or(TimeoutError)
    }

    /// Mutable access without locking, through a unique reference.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut lock = concurrent_futures::lock::RwLock::new(0);
    /// *lock.get_mut() += 1;
    /// assert_eq!(*lock.read(), 1);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
