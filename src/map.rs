//! [`Map`] and [`MapUnordered`]: lazy, bounded maps over an executor, with a deadline.
//!
//! Both pull their input through a [`Source`]: a closure that takes the next item and
//! submits it, so one implementation serves every executor. At most `buffer` tasks are in
//! flight; each item taken from the front is replaced before the iterator blocks on it, so
//! the workers stay busy while the caller consumes.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::MapError;
use crate::future::{deadline_after, Future};
use crate::wait::{as_completed, AsCompleted};
use crate::ResultTimeoutError;

/// Pulls the next input item and submits it: `None` when the input is exhausted, `Err` with
/// a reason when the executor refused the task.
pub(crate) type Source<'a, T> = Box<dyn FnMut() -> Option<Result<Future<T>, Arc<str>>> + Send + 'a>;

/// The input side shared by both maps.
struct Feed<'a, T> {
    source: Source<'a, T>,
    exhausted: bool,
    buffer: usize,
    start: Instant,
    deadline: Option<Instant>,
    finished: bool,
}

impl<'a, T: Send + 'static> Feed<'a, T> {
    fn new(source: Source<'a, T>, buffer: usize) -> Self {
        Feed {
            source,
            exhausted: false,
            buffer: buffer.max(1),
            start: Instant::now(),
            deadline: None,
            finished: false,
        }
    }

    /// Submits items until `in_flight` reaches the buffer size or the input ends.
    fn fill(&mut self, in_flight: usize, mut push: impl FnMut(Result<Future<T>, Arc<str>>)) {
        let mut in_flight = in_flight;
        while !self.exhausted && in_flight < self.buffer {
            match (self.source)() {
                None => self.exhausted = true,
                Some(Ok(fut)) => {
                    push(Ok(fut));
                    in_flight += 1;
                }
                Some(Err(reason)) => {
                    // The executor is gone: stop reading the input, report it once.
                    self.exhausted = true;
                    push(Err(reason));
                }
            }
        }
    }

    fn set_timeout(&mut self, timeout: Duration) {
        self.deadline = Some(
            self.start
                .checked_add(timeout)
                .unwrap_or_else(|| deadline_after(timeout)),
        );
    }
}

/// The ordered results of [`ThreadPoolExecutor::map`](crate::ThreadPoolExecutor::map).
///
/// Yields `Ok(value)` or `Err(MapError)` per input item, in input order. See `map` for
/// buffering, timeout and cancellation.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{MapError, ThreadPoolExecutor};
/// use std::time::Duration;
///
/// let pool = ThreadPoolExecutor::new();
/// let mut results = pool
///     .map(|ms: u64| { std::thread::sleep(Duration::from_millis(ms)); ms }, [0, 5_000])
///     .timeout(Duration::from_millis(200));
/// assert_eq!(results.next(), Some(Ok(0)));
/// assert_eq!(results.next(), Some(Err(MapError::Timeout))); // the slow one is given up
/// assert_eq!(results.next(), None);
/// ```
pub struct Map<'a, T: Send + 'static> {
    feed: Feed<'a, T>,
    in_flight: VecDeque<Result<Future<T>, Arc<str>>>,
}

impl<'a, T: Send + 'static> Map<'a, T> {
    pub(crate) fn new(source: Source<'a, T>, buffer: usize) -> Self {
        let mut map = Map {
            feed: Feed::new(source, buffer),
            in_flight: VecDeque::new(),
        };
        map.fill();
        map
    }

    fn fill(&mut self) {
        let in_flight = &mut self.in_flight;
        self.feed.fill(in_flight.len(), |f| in_flight.push_back(f));
    }

    /// Gives up `timeout` after the call to `map` (not after this call, nor per item): the
    /// tasks in flight are cancelled and the iterator yields [`MapError::Timeout`] once.
    ///
    /// # Examples
    ///
    /// See [`Map`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.feed.set_timeout(timeout);
        self
    }

    /// How many tasks to keep in flight (at least 1). Default: twice the pool's
    /// `max_workers`. The tasks submitted when `map` was called stay in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let n = pool.map(|x: u32| x + 1, 0..1000).buffer_size(64).filter(Result::is_ok).count();
    /// assert_eq!(n, 1000);
    /// ```
    pub fn buffer_size(mut self, tasks: usize) -> Self {
        self.feed.buffer = tasks.max(1);
        self
    }

    fn cancel_all(&mut self) {
        for fut in self.in_flight.drain(..).flatten() {
            fut.cancel();
        }
    }
}

impl<T: Send + 'static> Iterator for Map<'_, T> {
    type Item = Result<T, MapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.feed.finished {
            return None;
        }
        let Some(front) = self.in_flight.pop_front() else {
            self.feed.finished = true;
            return None;
        };
        self.fill(); // keep the workers busy while we wait
        let fut = match front {
            Ok(fut) => fut,
            Err(reason) => return Some(Err(MapError::Refused(reason))),
        };
        let outcome = match self.feed.deadline {
            None => fut.result().map_err(MapError::Task),
            Some(deadline) => match fut.result_deadline(deadline) {
                Ok(value) => Ok(value),
                Err(ResultTimeoutError::Failed(err)) => Err(MapError::Task(err)),
                Err(ResultTimeoutError::Timeout(fut)) => {
                    fut.cancel();
                    self.cancel_all();
                    self.feed.finished = true;
                    Err(MapError::Timeout)
                }
            },
        };
        Some(outcome)
    }
}

impl<T: Send + 'static> std::iter::FusedIterator for Map<'_, T> {}

impl<T: Send + 'static> Drop for Map<'_, T> {
    /// Cancels the tasks in flight that have not started.
    fn drop(&mut self) {
        self.cancel_all();
    }
}

impl<T: Send + 'static> fmt::Debug for Map<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("in_flight", &self.in_flight.len())
            .field("buffer", &self.feed.buffer)
            .field("deadline", &self.feed.deadline)
            .finish_non_exhaustive()
    }
}

/// The results of [`ThreadPoolExecutor::map_unordered`](crate::ThreadPoolExecutor::map_unordered),
/// in completion order: Python's `imap_unordered`.
///
/// # Examples
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
/// use std::time::Duration;
///
/// let pool = ThreadPoolExecutor::builder().max_workers(2).build()?;
/// let first = pool
///     .map_unordered(|ms: u64| { std::thread::sleep(Duration::from_millis(ms)); ms }, [300, 1])
///     .next();
/// assert_eq!(first, Some(Ok(1))); // the quick one comes first
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MapUnordered<'a, T: Send + 'static> {
    feed: Feed<'a, T>,
    in_flight: AsCompleted<Future<T>>,
    refused: Option<Arc<str>>,
}

impl<'a, T: Send + 'static> MapUnordered<'a, T> {
    pub(crate) fn new(source: Source<'a, T>, buffer: usize) -> Self {
        let mut map = MapUnordered {
            feed: Feed::new(source, buffer),
            in_flight: as_completed(Vec::new()),
            refused: None,
        };
        map.fill();
        map
    }

    fn fill(&mut self) {
        let (in_flight, refused) = (&mut self.in_flight, &mut self.refused);
        self.feed.fill(in_flight.remaining(), |f| match f {
            Ok(fut) => in_flight.push(fut),
            Err(reason) => *refused = Some(reason),
        });
    }

    /// As [`Map::timeout`]: a deadline measured from the call to `map_unordered`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{MapError, ThreadPoolExecutor};
    /// # use std::time::Duration;
    /// let pool = ThreadPoolExecutor::new();
    /// let last = pool
    ///     .map_unordered(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), [5_000])
    ///     .timeout(Duration::from_millis(50))
    ///     .last();
    /// assert_eq!(last, Some(Err(MapError::Timeout)));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.feed.set_timeout(timeout);
        self
    }

    /// As [`Map::buffer_size`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// assert_eq!(pool.map_unordered(|x: u8| x, 0..10).buffer_size(1).count(), 10);
    /// ```
    pub fn buffer_size(mut self, tasks: usize) -> Self {
        self.feed.buffer = tasks.max(1);
        self
    }

    fn cancel_all(&mut self) {
        for fut in self.in_flight.release() {
            fut.cancel();
        }
    }
}

impl<T: Send + 'static> Iterator for MapUnordered<'_, T> {
    type Item = Result<T, MapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.feed.finished {
            return None;
        }
        self.fill();
        if let Some(reason) = self.refused.take() {
            return Some(Err(MapError::Refused(reason)));
        }
        if self.in_flight.remaining() == 0 {
            self.feed.finished = true;
            return None;
        }
        match self.in_flight.next_until(self.feed.deadline) {
            Some(fut) => {
                self.fill();
                Some(fut.result().map_err(MapError::Task))
            }
            None => {
                self.cancel_all();
                self.feed.finished = true;
                Some(Err(MapError::Timeout))
            }
        }
    }
}

impl<T: Send + 'static> std::iter::FusedIterator for MapUnordered<'_, T> {}

impl<T: Send + 'static> Drop for MapUnordered<'_, T> {
    /// Cancels the tasks in flight that have not started.
    fn drop(&mut self) {
        self.cancel_all();
    }
}

impl<T: Send + 'static> fmt::Debug for MapUnordered<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapUnordered")
            .field("in_flight", &self.in_flight.remaining())
            .field("buffer", &self.feed.buffer)
            .field("deadline", &self.feed.deadline)
            .finish_non_exhaustive()
    }
}
