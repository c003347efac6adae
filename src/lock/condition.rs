//! [`Condition`]: a lock with a condition variable, for waiting until the state is right.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::future::deadline_after;

/// State guarded by a lock, plus a condition variable to wait for it to change: Python's
/// `threading.Condition`.
///
/// # Examples
///
/// ```
/// use concurrent_futures::lock::Condition;
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let queue = Arc::new(Condition::new(Vec::new()));
/// let producer = {
///     let queue = queue.clone();
///     std::thread::spawn(move || {
///         queue.lock().push("job");
///         queue.notify_all();
///     })
/// };
/// let mut items = queue.lock();
/// // Python: cond.wait_for(lambda: items, timeout=10)
/// assert!(items.wait_for(|v| !v.is_empty(), Some(Duration::from_secs(10))));
/// assert_eq!(items.pop(), Some("job"));
/// # drop(items);
/// producer.join().unwrap();
/// ```
#[derive(Default)]
pub struct Condition<T: ?Sized> {
    cv: parking_lot::Condvar,
    mutex: parking_lot::Mutex<T>,
}

/// Access to a [`Condition`]'s state, with the waits that release and retake the lock.
///
/// # Examples
///
/// ```
/// let cond = concurrent_futures::lock::Condition::new(0u32);
/// let mut guard = cond.lock();
/// *guard += 1; // the state, through the guard
/// guard.notify_all();
/// ```
#[must_use = "if unused the Condition will immediately unlock"]
pub struct ConditionGuard<'a, T: ?Sized> {
    cond: &'a Condition<T>,
    guard: parking_lot::MutexGuard<'a, T>,
}

impl<T> Condition<T> {
    /// A condition around `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = concurrent_futures::lock::Condition::new(false);
    /// assert!(!*cond.lock());
    /// ```
    pub const fn new(value: T) -> Self {
        Condition {
            cv: parking_lot::Condvar::new(),
            mutex: parking_lot::const_mutex(value),
        }
    }

    /// Consumes the condition and returns the state.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(concurrent_futures::lock::Condition::new(4).into_inner(), 4);
    /// ```
    pub fn into_inner(self) -> T {
        self.mutex.into_inner()
    }
}

impl<T: ?Sized> Condition<T> {
    /// Locks the state (Python: `with cond:`).
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = concurrent_futures::lock::Condition::new(vec![1]);
    /// cond.lock().push(2); // the guard derefs to the state
    /// assert_eq!(cond.into_inner(), [1, 2]);
    /// ```
    pub fn lock(&self) -> ConditionGuard<'_, T> {
        ConditionGuard {
            cond: self,
            guard: self.mutex.lock(),
        }
    }

    /// Wakes one waiting thread, if any. Unlike Python, the lock need not be held.
    /// Returns whether a thread was woken.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = concurrent_futures::lock::Condition::new(());
    /// assert!(!cond.notify_one()); // nobody waiting
    /// ```
    pub fn notify_one(&self) -> bool {
        self.cv.notify_one()
    }

    /// Wakes up to `n` waiting threads (Python: `notify(n)`); returns how many woke.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = concurrent_futures::lock::Condition::new(());
    /// assert_eq!(cond.notify(3), 0);
    /// ```
    pub fn notify(&self, n: usize) -> usize {
        (0..n).take_while(|_| self.cv.notify_one()).count()
    }

    /// Wakes every waiting thread; returns how many woke.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = concurrent_futures::lock::Condition::new(false);
    /// *cond.lock() = true;
    /// assert_eq!(cond.notify_all(), 0); // nobody was waiting
    /// ```
    pub fn notify_all(&self) -> usize {
        self.cv.notify_all()
    }
}

impl<T: ?Sized> ConditionGuard<'_, T> {
    /// Releases the lock, waits for a notification, and retakes the lock. Wake-ups can be
    /// spurious: re-check the state, or use [`wait_for`](Self::wait_for).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::lock::Condition;
    /// use std::sync::Arc;
    ///
    /// let flag = Arc::new(Condition::new(false));
    /// let f = flag.clone();
    /// std::thread::spawn(move || { *f.lock() = true; f.notify_all(); });
    /// let mut g = flag.lock();
    /// while !*g {
    ///     g.wait();
    /// }
    /// ```
    pub fn wait(&mut self) {
        self.cond.cv.wait(&mut self.guard);
    }

    /// Like [`wait`](Self::wait), giving up after `timeout`. Returns `false` if it timed
    /// out (as Python's `wait(timeout)`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let cond = concurrent_futures::lock::Condition::new(());
    /// assert!(!cond.lock().wait_timeout(Duration::from_millis(1)));
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> bool {
        !self
            .cond
            .cv
            .wait_until(&mut self.guard, deadline_after(timeout))
            .timed_out()
    }

    /// Waits until `predicate` holds, or `timeout` passes; returns the predicate's last value
    /// (Python: `wait_for(predicate, timeout)`). The predicate is checked first, with the
    /// lock held, and again after each wake-up.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::lock::Condition;
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let queue = Arc::new(Condition::new(Vec::<u32>::new()));
    /// let q = queue.clone();
    /// std::thread::spawn(move || {
    ///     let mut g = q.lock();
    ///     g.push(7);
    ///     g.notify_all();
    /// });
    /// let mut g = queue.lock();
    /// assert!(g.wait_for(|items| !items.is_empty(), Some(Duration::from_secs(30))));
    /// assert_eq!(g.pop(), Some(7));
    /// ```
    pub fn wait_for(
        &mut self,
        mut predicate: impl FnMut(&mut T) -> bool,
        timeout: Option<Duration>,
    ) -> bool {
        let deadline = timeout.map(deadline_after);
        loop {
            if predicate(&mut self.guard) {
                return true;
            }
            match deadline {
                None => self.cond.cv.wait(&mut self.guard),
                Some(deadline) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    let _ = self.cond.cv.wait_until(&mut self.guard, deadline);
                }
            }
        }
    }

    /// Wakes one waiting thread (Python's `notify()` under the lock).
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = concurrent_futures::lock::Condition::new(0);
    /// let mut g = cond.lock();
    /// *g += 1;
    /// g.notify_one();
    /// ```
    pub fn notify_one(&self) -> bool {
        self.cond.notify_one()
    }

    /// Wakes every waiting thread (Python's `notify_all()` under the lock).
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = concurrent_futures::lock::Condition::new(0);
    /// cond.lock().notify_all();
    /// ```
    pub fn notify_all(&self) -> usize {
        self.cond.notify_all()
    }
}

impl<T: ?Sized> Deref for ConditionGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: ?Sized> DerefMut for ConditionGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Condition<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("state", &&self.mutex)
            .finish()
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for ConditionGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
