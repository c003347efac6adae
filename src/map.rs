//! [`Map`] and [`MapUnordered`]: lazy, bounded, chunked maps over an executor, with a deadline.
//!
//! Both pull their input through a [`Source`]: a closure that takes the next chunk of items
//! and submits it as one task, so one implementation serves every executor. At most
//! `buffer` chunks are in flight; each chunk taken from the front is replaced before the
//! iterator blocks on it, so the workers stay busy while the caller consumes. Nothing is
//! submitted before the first `next()`, so `buffer_size` and `chunk_size` apply to every
//! task; the deadline counts from the call that made the map.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{MapError, TaskError};
use crate::future::{deadline_after, Future};
use crate::wait::{as_completed, AsCompleted};
use crate::ResultTimeoutError;

/// The results of one chunk, one per item: a panic fails its own item only.
pub(crate) type Chunk<T> = Vec<Result<T, TaskError>>;

/// Pulls up to `n` input items and submits them as one task: `None` when the input is
/// exhausted, `Err` with a reason when the executor refused the task.
pub(crate) type Source<'a, T> =
    Box<dyn FnMut(usize) -> Option<Result<Future<Chunk<T>>, Arc<str>>> + Send + 'a>;

/// Applies `f` to every item of a chunk, catching each item's panic separately.
pub(crate) fn run_chunk<A, T>(f: &(impl Fn(A) -> T + ?Sized), items: Vec<A>) -> Chunk<T> {
    items
        .into_iter()
        .map(|x| panic::catch_unwind(AssertUnwindSafe(|| f(x))).map_err(TaskError::from_panic))
        .collect()
}

/// The input side shared by both maps.
struct Feed<'a, T> {
    source: Source<'a, T>,
    exhausted: bool,
    buffer: usize,
    chunk: usize,
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
            chunk: 1,
            start: Instant::now(),
            deadline: None,
            finished: false,
        }
    }

    /// Submits chunks until `in_flight` reaches the buffer size or the input ends.
    fn fill(&mut self, in_flight: usize, mut push: impl FnMut(Result<Future<Chunk<T>>, Arc<str>>)) {
        let mut in_flight = in_flight;
        while !self.exhausted && in_flight < self.buffer {
            match (self.source)(self.chunk) {
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
/// buffering, chunking, timeout and cancellation.
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
    in_flight: VecDeque<Result<Future<Chunk<T>>, Arc<str>>>,
    /// Results of the chunk at the front, not yet yielded.
    ready: std::vec::IntoIter<Result<T, TaskError>>,
}

impl<'a, T: Send + 'static> Map<'a, T> {
    pub(crate) fn new(source: Source<'a, T>, buffer: usize) -> Self {
        Map {
            feed: Feed::new(source, buffer),
            in_flight: VecDeque::new(),
            ready: Vec::new().into_iter(),
        }
    }

    /// Refills the window; `waiting` counts a task already taken off the front but not yet
    /// yielded, which still counts against the buffer (as Python's `buffersize` does).
    fn fill(&mut self, waiting: usize) {
        let in_flight = &mut self.in_flight;
        self.feed
            .fill(in_flight.len() + waiting, |f| in_flight.push_back(f));
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

    /// How many tasks (chunks) may be submitted and not yet yielded, at least 1 (Python
    /// 3.14's `buffersize`). Default: twice the pool's `max_workers`.
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

    /// How many items each task takes, at least 1 (Python's `chunksize`). Default 1. Larger
    /// chunks spread the per-task cost over many items, for cheap functions over long inputs.
    /// A panic still fails only its own item; a chunk that fails as a whole (cancelled, or a
    /// broken executor) yields one error for the chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let sum: u64 = pool.map(|x: u64| x * 2, 0..100_000).chunk_size(1000).map(Result::unwrap).sum();
    /// assert_eq!(sum, 99_999 * 100_000);
    /// ```
    pub fn chunk_size(mut self, items: usize) -> Self {
        self.feed.chunk = items.max(1);
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
        loop {
            if let Some(item) = self.ready.next() {
                return Some(item.map_err(MapError::Task));
            }
            if self.feed.finished {
                return None;
            }
            self.fill(0);
            let Some(front) = self.in_flight.pop_front() else {
                self.feed.finished = true;
                return None;
            };
            self.fill(1); // keep the workers busy while we wait
            let fut = match front {
                Ok(fut) => fut,
                Err(reason) => return Some(Err(MapError::Refused(reason))),
            };
            let chunk = match self.feed.deadline {
                None => fut.result(),
                Some(deadline) => match fut.result_deadline(deadline) {
                    Ok(chunk) => Ok(chunk),
                    Err(ResultTimeoutError::Failed(err)) => Err(err),
                    Err(ResultTimeoutError::Timeout(fut)) => {
                        fut.cancel();
                        self.cancel_all();
                        self.feed.finished = true;
                        return Some(Err(MapError::Timeout));
                    }
                },
            };
            match chunk {
                Ok(chunk) => self.ready = chunk.into_iter(),
                Err(err) => return Some(Err(MapError::Task(err))),
            }
        }
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
            .field("chunk", &self.feed.chunk)
            .field("deadline", &self.feed.deadline)
            .finish_non_exhaustive()
    }
}

/// The results of [`ThreadPoolExecutor::map_unordered`](crate::ThreadPoolExecutor::map_unordered),
/// in completion order: Python's `imap_unordered`. (With chunks, a chunk's items come
/// together, in input order, when the chunk completes.)
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
    in_flight: AsCompleted<Future<Chunk<T>>>,
    refused: Option<Arc<str>>,
    ready: std::vec::IntoIter<Result<T, TaskError>>,
}

impl<'a, T: Send + 'static> MapUnordered<'a, T> {
    pub(crate) fn new(source: Source<'a, T>, buffer: usize) -> Self {
        MapUnordered {
            feed: Feed::new(source, buffer),
            in_flight: as_completed(Vec::new()),
            refused: None,
            ready: Vec::new().into_iter(),
        }
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

    /// As [`Map::chunk_size`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// assert_eq!(pool.map_unordered(|x: u32| x, 0..1000).chunk_size(100).count(), 1000);
    /// ```
    pub fn chunk_size(mut self, items: usize) -> Self {
        self.feed.chunk = items.max(1);
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
        loop {
            if let Some(item) = self.ready.next() {
                return Some(item.map_err(MapError::Task));
            }
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
                    match fut.result() {
                        Ok(chunk) => self.ready = chunk.into_iter(),
                        Err(err) => return Some(Err(MapError::Task(err))),
                    }
                }
                None => {
                    self.cancel_all();
                    self.feed.finished = true;
                    return Some(Err(MapError::Timeout));
                }
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
            .field("chunk", &self.feed.chunk)
            .field("deadline", &self.feed.deadline)
            .finish_non_exhaustive()
    }
}
