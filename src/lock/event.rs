//! [`Event`]: a flag that threads can wait on.

use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::future::deadline_after;

/// A flag that threads wait to be set: Python's `threading.Event`.
///
/// # Examples
///
/// ```
/// use concurrent_futures::lock::Event;
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let ready = Arc::new(Event::new());
/// let r = ready.clone();
/// let worker = std::thread::spawn(move || r.wait_timeout(Duration::from_secs(10)));
/// ready.set();
/// assert!(worker.join().unwrap());
/// ```
#[derive(Default)]
pub struct Event {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Event {
    /// An event that is not set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!concurrent_futures::lock::Event::new().is_set());
    /// ```
    pub const fn new() -> Self {
        Event {
            flag: parking_lot::const_mutex(false),
            cv: Condvar::new(),
        }
    }

    /// Returns `true` if the flag is set.
    ///
    /// # Examples
    ///
    /// ```
    /// let ready = concurrent_futures::lock::Event::new();
    /// assert!(!ready.is_set());
    /// ready.set();
    /// assert!(ready.is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        *self.flag.lock()
    }

    /// Sets the flag and wakes every waiter.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = concurrent_futures::lock::Event::new();
    /// e.set();
    /// assert!(e.is_set());
    /// e.wait(); // returns at once
    /// ```
    pub fn set(&self) {
        *self.flag.lock() = true;
        self.cv.notify_all();
    }

    /// Clears the flag; later waits block until it is set again.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = concurrent_futures::lock::Event::new();
    /// e.set();
    /// e.clear();
    /// assert!(!e.is_set());
    /// ```
    pub fn clear(&self) {
        *self.flag.lock() = false;
    }

    /// Blocks until the flag is set.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::lock::Event;
    /// use std::sync::Arc;
    ///
    /// let ready = Arc::new(Event::new());
    /// let r = ready.clone();
    /// std::thread::spawn(move || r.set());
    /// ready.wait(); // returns once set
    /// assert!(ready.is_set());
    /// ```
    pub fn wait(&self) {
        let mut flag = self.flag.lock();
        while !*flag {
            self.cv.wait(&mut flag);
        }
    }

    /// Blocks until the flag is set or `timeout` passes; returns the flag (as Python's
    /// `wait(timeout)`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let e = concurrent_futures::lock::Event::new();
    /// assert!(!e.wait_timeout(Duration::from_millis(1)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(deadline_after(timeout))
    }

    /// Blocks until the flag is set or `deadline` passes; returns the flag.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Instant;
    /// let e = concurrent_futures::lock::Event::new();
    /// e.set();
    /// assert!(e.wait_deadline(Instant::now()));
    /// ```
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        let mut flag = self.flag.lock();
        while !*flag {
            if self.cv.wait_until(&mut flag, deadline).timed_out() {
                break;
            }
        }
        *flag
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}
