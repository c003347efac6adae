//! [`Barrier`]: a rendezvous for a fixed number of threads, which can time out and break.
//!
//! The state machine is Python's (`threading.Barrier`):
//!
//! ```text
//! FILLING --last party arrives, action ok--> DRAINING --last waiter leaves--> FILLING
//! FILLING --timeout / abort / action panics--> BROKEN --reset, waiters left--> RESETTING
//! FILLING --reset with waiters--> RESETTING --last waiter leaves--> FILLING
//! ```
//!
//! Arrivals wait while the barrier is DRAINING or RESETTING, so a fast thread cannot join
//! the next round before the last one has let everyone go.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::future::deadline_after;

/// The barrier was broken (a wait timed out, [`Barrier::abort`] or [`Barrier::reset`] was
/// called, or the action panicked) while or before this thread waited.
///
/// # Examples
///
/// ```
/// use concurrent_futures::lock::{Barrier, BrokenBarrierError};
///
/// let b = Barrier::new(2);
/// b.abort();
/// assert_eq!(b.wait(), Err(BrokenBarrierError));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("barrier is broken")]
pub struct BrokenBarrierError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Filling,
    Draining,
    Resetting,
    Broken,
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Threads inside `wait` (arrived and not yet left).
    count: usize,
}

type Action = Box<dyn Fn() + Send + Sync>;

/// Makes `parties` threads wait for each other: Python's `threading.Barrier`, with timeouts,
/// `abort` and `reset`. Each successful [`wait`](Self::wait) returns a distinct index in
/// `0..parties`.
///
/// # Examples
///
/// ```
/// use concurrent_futures::lock::Barrier;
/// use std::sync::Arc;
///
/// let barrier = Arc::new(Barrier::new(3));
/// let handles: Vec<_> = (0..3)
///     .map(|_| {
///         let b = barrier.clone();
///         std::thread::spawn(move || b.wait())
///     })
///     .collect();
/// let mut indices: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]);
/// ```
pub struct Barrier {
    parties: usize,
    timeout: Option<Duration>,
    action: Option<Action>,
    inner: Mutex<Inner>,
    cv: Condvar,
}

impl Barrier {
    /// A barrier for `parties` threads (at least 1).
    ///
    /// # Panics
    ///
    /// If `parties` is 0 (Python raises `ValueError`).
    ///
    /// # Examples
    ///
    /// ```
    /// let b = concurrent_futures::lock::Barrier::new(1);
    /// assert_eq!(b.wait(), Ok(0)); // one party: passes at once
    /// ```
    pub fn new(parties: usize) -> Self {
        assert!(parties > 0, "a barrier needs at least one party");
        Barrier {
            parties,
            timeout: None,
            action: None,
            inner: Mutex::new(Inner {
                phase: Phase::Filling,
                count: 0,
            }),
            cv: Condvar::new(),
        }
    }

    /// Runs `action` once per round, in the last thread to arrive, before any is released.
    /// If it panics, the barrier breaks (Python: the `action` argument).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::lock::Barrier;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    ///
    /// let rounds = Arc::new(AtomicU32::new(0));
    /// let r = rounds.clone();
    /// let b = Barrier::new(1).with_action(move || { r.fetch_add(1, Ordering::SeqCst); });
    /// b.wait().unwrap();
    /// b.wait().unwrap();
    /// assert_eq!(rounds.load(Ordering::SeqCst), 2);
    /// ```
    pub fn with_action(mut self, action: impl Fn() + Send + Sync + 'static) -> Self {
        self.action = Some(Box::new(action));
        self
    }

    /// The timeout [`wait`](Self::wait) uses (Python: the `timeout` argument).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = concurrent_futures::lock::Barrier::new(2).with_timeout(Duration::from_millis(1));
    /// assert!(b.wait().is_err()); // the other party never came
    /// assert!(b.is_broken());
    /// ```
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Waits until all parties have called `wait`, then returns this thread's index.
    ///
    /// # Errors
    ///
    /// [`BrokenBarrierError`] if the barrier is or becomes broken or reset while waiting,
    /// or the default timeout passes (which breaks it for everyone).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::lock::Barrier;
    /// use std::sync::Arc;
    ///
    /// let barrier = Arc::new(Barrier::new(2));
    /// let b = barrier.clone();
    /// let other = std::thread::spawn(move || b.wait().unwrap());
    /// let mine = barrier.wait().unwrap();
    /// let mut ids = [mine, other.join().unwrap()];
    /// ids.sort();
    /// assert_eq!(ids, [0, 1]); // each party gets its own index
    /// ```
    pub fn wait(&self) -> Result<usize, BrokenBarrierError> {
        self.wait_until(self.timeout.map(deadline_after))
    }

    /// Like [`wait`](Self::wait) with this timeout instead of the default.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait); a timeout breaks the barrier.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = concurrent_futures::lock::Barrier::new(2);
    /// assert!(b.wait_timeout(Duration::from_millis(1)).is_err());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BrokenBarrierError> {
        self.wait_until(Some(deadline_after(timeout)))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<usize, BrokenBarrierError> {
        let mut inner = self.inner.lock();
        // Enter: wait for the previous round to drain or reset.
        while matches!(inner.phase, Phase::Draining | Phase::Resetting) {
            self.cv.wait(&mut inner);
        }
        if inner.phase == Phase::Broken {
            return Err(BrokenBarrierError);
        }
        let index = inner.count;
        inner.count += 1;
        let outcome = if index + 1 == self.parties {
            self.release(&mut inner)
        } else {
            self.await_release(&mut inner, deadline)
        };
        // Exit: the last one out of a drained or reset round reopens the barrier.
        inner.count -= 1;
        if inner.count == 0 && matches!(inner.phase, Phase::Draining | Phase::Resetting) {
            inner.phase = Phase::Filling;
            self.cv.notify_all();
        }
        outcome.map(|()| index)
    }

    /// The last party arrived: run the action and let everyone go.
    fn release(&self, inner: &mut MutexGuard<'_, Inner>) -> Result<(), BrokenBarrierError> {
        if let Some(action) = &self.action {
            if panic::catch_unwind(AssertUnwindSafe(action)).is_err() {
                log::error!(target: "concurrent_futures", "barrier action panicked; barrier broken");
                self.break_barrier(inner);
                return Err(BrokenBarrierError);
            }
        }
        inner.phase = Phase::Draining;
        self.cv.notify_all();
        Ok(())
    }

    fn await_release(
        &self,
        inner: &mut MutexGuard<'_, Inner>,
        deadline: Option<Instant>,
    ) -> Result<(), BrokenBarrierError> {
        while inner.phase == Phase::Filling {
            match deadline {
                None => self.cv.wait(inner),
                Some(deadline) => {
                    if self.cv.wait_until(inner, deadline).timed_out()
                        && inner.phase == Phase::Filling
                    {
                        self.break_barrier(inner);
                        return Err(BrokenBarrierError);
                    }
                }
            }
        }
        match inner.phase {
            Phase::Draining => Ok(()),
            _ => Err(BrokenBarrierError),
        }
    }

    fn break_barrier(&self, inner: &mut MutexGuard<'_, Inner>) {
        inner.phase = Phase::Broken;
        self.cv.notify_all();
    }

    /// Breaks the barrier: current and future waiters get [`BrokenBarrierError`] until
    /// [`reset`](Self::reset).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::lock::{Barrier, BrokenBarrierError};
    ///
    /// let barrier = Barrier::new(2);
    /// barrier.abort(); // e.g. one party failed
    /// assert_eq!(barrier.wait(), Err(BrokenBarrierError));
    /// ```
    pub fn abort(&self) {
        self.break_barrier(&mut self.inner.lock());
    }

    /// Returns the barrier to its empty state; threads waiting now get
    /// [`BrokenBarrierError`].
    ///
    /// # Examples
    ///
    /// ```
    /// let b = concurrent_futures::lock::Barrier::new(1);
    /// b.abort();
    /// b.reset();
    /// assert!(!b.is_broken());
    /// assert_eq!(b.wait(), Ok(0));
    /// ```
    pub fn reset(&self) {
        let mut inner = self.inner.lock();
        if inner.count > 0 {
            if matches!(inner.phase, Phase::Filling | Phase::Broken) {
                inner.phase = Phase::Resetting;
            }
        } else {
            inner.phase = Phase::Filling;
        }
        self.cv.notify_all();
    }

    /// The number of threads needed to pass.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(concurrent_futures::lock::Barrier::new(4).parties(), 4);
    /// ```
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// The number of threads waiting now.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(concurrent_futures::lock::Barrier::new(4).n_waiting(), 0);
    /// ```
    pub fn n_waiting(&self) -> usize {
        let inner = self.inner.lock();
        if inner.phase == Phase::Filling {
            inner.count
        } else {
            0
        }
    }

    /// Returns `true` if the barrier is broken.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = concurrent_futures::lock::Barrier::new(3);
    /// assert!(!barrier.is_broken());
    /// barrier.abort();
    /// assert!(barrier.is_broken());
    /// ```
    pub fn is_broken(&self) -> bool {
        self.inner.lock().phase == Phase::Broken
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("phase", &inner.phase)
            .field("count", &inner.count)
            .finish_non_exhaustive()
    }
}
