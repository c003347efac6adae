//! [`Map`] and [`MapUnordered`]: lazy, bounded, chunked maps over an executor, with a deadline.
//!
//! Both pull their input through a [`Source`]: the input iterator and a closure that submits
//! a chunk of items as one task, so one implementation serves every executor. At most
//! `buffer` chunks are in flight; each chunk taken from the front is replaced before the
//! iterator blocks on it, so the workers stay busy while the caller consumes. Nothing is
//! submitted before the first `next()`, so `buffer_size` and `chunk_size` apply to every
//! task; the deadline counts from the call that made the map. Without `chunk_size`, each
//! chunk's size is chosen by the [`sizer`] from the pool time per item measured on the
//! chunks that came back.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod sizer;

pub(crate) use self::sizer::Limit;
use self::sizer::{MAX_IN_FLIGHT, Sizer};

use crate::error::{MapError, TaskError};
use crate::future::{Future, ResultTimeoutError, deadline_after};
use crate::wait::{AsCompleted, as_completed};

/// The results of one chunk, one per item: a panic fails its own item only.
///
/// A chunk whose items all succeeded (nearly every chunk) carries the bare values: the
/// caller's thread reads results that another core wrote, so for tiny items the bytes per
/// item are the cost of the whole map, and a `u64` then moves 8 bytes instead of 16 (or 32
/// with the error inline: the error is boxed for the same reason).
#[derive(Debug)]
pub(crate) enum Chunk<T> {
    /// Every item's value, in order.
    Values(Few<T>),
    /// Every item's outcome, in order: at least one failed.
    Results(Few<Result<T, Box<TaskError>>>),
}

impl<T> Chunk<T> {
    /// How many items the chunk holds.
    #[cfg(any(all(unix, feature = "process"), feature = "redis"))]
    pub(crate) fn len(&self) -> usize {
        match self {
            Chunk::Values(v) => v.len(),
            Chunk::Results(r) => r.len(),
        }
    }

    /// Every item's outcome, in order.
    #[cfg(any(all(unix, feature = "process"), all(test, feature = "redis")))]
    pub(crate) fn into_results(self) -> Vec<Result<T, Box<TaskError>>> {
        match self {
            Chunk::Values(v) => v.into_iter().map(Ok).collect(),
            Chunk::Results(r) => r.into_iter().collect(),
        }
    }
}

impl<T> FromIterator<Result<T, Box<TaskError>>> for Chunk<T> {
    fn from_iter<I: IntoIterator<Item = Result<T, Box<TaskError>>>>(iter: I) -> Self {
        Chunk::Results(iter.into_iter().collect())
    }
}

/// The items of a chunk, or their results. One is held inline, not in a vector: a map of one
/// item per task (the default, as in Python) allocates nothing beyond the task itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Few<A> {
    One(A),
    Many(Vec<A>),
}

impl<A> std::ops::Deref for Few<A> {
    type Target = [A];

    fn deref(&self) -> &[A] {
        match self {
            Few::One(a) => std::slice::from_ref(a),
            Few::Many(v) => v,
        }
    }
}

impl<A> FromIterator<A> for Few<A> {
    fn from_iter<I: IntoIterator<Item = A>>(iter: I) -> Self {
        Few::Many(iter.into_iter().collect())
    }
}

impl<A> IntoIterator for Few<A> {
    type Item = A;
    type IntoIter = FewIter<A>;

    fn into_iter(self) -> FewIter<A> {
        match self {
            Few::One(a) => FewIter::One(Some(a)),
            Few::Many(v) => FewIter::Many(v.into_iter()),
        }
    }
}

/// The iterator of a [`Few`].
#[derive(Debug)]
pub(crate) enum FewIter<A> {
    One(Option<A>),
    Many(std::vec::IntoIter<A>),
}

impl<A> Iterator for FewIter<A> {
    type Item = A;

    #[inline]
    fn next(&mut self) -> Option<A> {
        match self {
            FewIter::One(a) => a.take(),
            FewIter::Many(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match self {
            FewIter::One(a) => usize::from(a.is_some()),
            FewIter::Many(it) => it.len(),
        };
        (n, Some(n))
    }
}

impl<A> ExactSizeIterator for FewIter<A> {}

/// What submitting a chunk gives: its future, or the executor's reason for refusing it.
pub(crate) type Submitted<T> = Result<Future<Chunk<T>>, Arc<str>>;

/// The input of a map: takes up to `n` items and submits them as one task (`None` when the
/// input is exhausted, else how many items it took and what the submit gave), and says how
/// many items may be left.
pub(crate) trait Feeder<T>: Send {
    fn next_chunk(&mut self, n: usize) -> Option<(usize, Submitted<T>)>;
    fn size_hint(&self) -> (usize, Option<usize>);
    /// The most items the executor can take in one chunk (its message limit), and the
    /// most that keep a chunk's items and results small in memory.
    fn limit(&self) -> usize;
    /// The pool time the adaptive default sizes a chunk to.
    fn target(&self) -> Duration;
}

/// A map's input, boxed.
pub(crate) type Source<'a, T> = Box<dyn Feeder<T> + 'a>;

/// The one [`Feeder`]: an iterator and an executor's way to submit a chunk of its items.
pub(crate) struct Input<I, S> {
    items: I,
    submit: S,
    limit: Option<Arc<Limit>>,
}

/// A map's input over `items`, each chunk submitted by `submit`.
pub(crate) fn source<'a, I, S, T>(items: I, submit: S) -> Source<'a, T>
where
    I: Iterator + Send + 'a,
    S: FnMut(Few<I::Item>) -> Submitted<T> + Send + 'a,
    T: Send + 'static,
{
    Box::new(Input {
        items,
        submit,
        limit: None,
    })
}

#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
/// As [`source`], for an executor whose messages have a size limit: `limit` is fed the
/// encoded size of each chunk by `submit`, and bounds the size of the chunks the map makes
/// when the user did not choose one.
pub(crate) fn source_limited<'a, I, S, T>(items: I, submit: S, limit: Arc<Limit>) -> Source<'a, T>
where
    I: Iterator + Send + 'a,
    S: FnMut(Few<I::Item>) -> Submitted<T> + Send + 'a,
    T: Send + 'static,
{
    Box::new(Input {
        items,
        submit,
        limit: Some(limit),
    })
}

impl<I, S, T> Feeder<T> for Input<I, S>
where
    I: Iterator + Send,
    S: FnMut(Few<I::Item>) -> Submitted<T> + Send,
    T: Send + 'static,
{
    fn next_chunk(&mut self, n: usize) -> Option<(usize, Submitted<T>)> {
        let batch = if n == 1 {
            Few::One(self.items.next()?)
        } else {
            let batch: Vec<I::Item> = self.items.by_ref().take(n).collect();
            if batch.is_empty() {
                return None;
            }
            Few::Many(batch)
        };
        let len = batch.len();
        Some((len, (self.submit)(batch)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.items.size_hint()
    }

    fn target(&self) -> Duration {
        self.limit.as_ref().map_or(sizer::TARGET, |l| l.target)
    }

    fn limit(&self) -> usize {
        let bytes = std::mem::size_of::<I::Item>()
            .max(std::mem::size_of::<Result<T, Box<TaskError>>>())
            .max(1);
        let in_memory = (sizer::CHUNK_BYTES / bytes).max(1);
        self.limit
            .as_ref()
            .map_or(in_memory, |l| l.items().min(in_memory))
    }
}

/// Applies `f` to every item of a chunk, catching each item's panic separately: the bare
/// values while every item succeeds, each item's outcome from the first panic on.
pub(crate) fn run_chunk<A, T>(f: &(impl Fn(A) -> T + ?Sized), items: Few<A>) -> Chunk<T> {
    let run = |x| {
        panic::catch_unwind(AssertUnwindSafe(|| f(x)))
            .map_err(|p| Box::new(TaskError::from_panic(p)))
    };
    let items = match items {
        Few::One(x) => {
            return match run(x) {
                Ok(value) => Chunk::Values(Few::One(value)),
                Err(err) => Chunk::Results(Few::One(Err(err))),
            };
        }
        Few::Many(items) => items,
    };
    // One `catch_unwind` for the whole run while no item panics (one per item keeps a loop
    // of tiny items from being compiled tight): an item's panic leaves `values` holding the
    // results of the items before it, since each is pushed before the next is taken.
    let mut values = Vec::with_capacity(items.len());
    let mut items = items.into_iter();
    let run_all = panic::catch_unwind(AssertUnwindSafe(|| {
        for x in items.by_ref() {
            values.push(f(x));
        }
    }));
    match run_all {
        Ok(()) => Chunk::Values(Few::Many(values)),
        Err(panic) => {
            let mut results: Vec<_> = values.into_iter().map(Ok).collect();
            results.reserve_exact(items.len() + 1);
            results.push(Err(Box::new(TaskError::from_panic(panic))));
            results.extend(items.map(run));
            Chunk::Results(Few::Many(results))
        }
    }
}

/// Which input items a chunk holds: `len` items from index `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    first: usize,
    len: usize,
}

/// A chunk submitted (or refused) and not yet yielded.
type Pending<T> = (Span, Result<Future<Chunk<T>>, Arc<str>>);

/// The input side shared by both maps.
struct Feed<'a, T> {
    source: Source<'a, T>,
    exhausted: bool,
    buffer: usize,
    /// The executor's buffer for a map of fixed chunks, if it differs, and whether the user
    /// chose the buffer (which then holds whatever the chunks).
    fixed_buffer: Option<usize>,
    buffer_chosen: bool,
    /// The chunk size the user chose; `None` for the adaptive default.
    chunk: Option<usize>,
    sizer: Sizer,
    /// The index of the next input item.
    read: usize,
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
            fixed_buffer: None,
            buffer_chosen: false,
            chunk: None,
            sizer: Sizer::new(),
            read: 0,
            start: Instant::now(),
            deadline: None,
            finished: false,
        }
    }

    /// A chunk of `items` came back: the adaptive size measures it (a fixed size reads no
    /// clock).
    fn done(&mut self, items: usize) {
        if self.chunk.is_none() {
            self.sizer.done(items, Instant::now());
        }
    }

    /// How many chunks may be in flight.
    fn window(&self) -> usize {
        match (self.chunk, self.fixed_buffer) {
            (Some(_), Some(fixed)) if !self.buffer_chosen => fixed,
            _ => self.buffer,
        }
    }

    fn set_buffer(&mut self, tasks: usize) {
        self.buffer = tasks.max(1);
        self.buffer_chosen = true;
    }

    fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Submits chunks until `in_flight` reaches the buffer size, the input ends, or the
    /// deadline passes (no input is read after it).
    fn fill(&mut self, in_flight: usize, mut push: impl FnMut(Pending<T>)) {
        let mut in_flight = in_flight;
        let buffer = self.window();
        if self.chunk.is_none() && !self.exhausted && in_flight < buffer {
            self.sizer.start();
        }
        while !self.exhausted && in_flight < buffer && !self.expired() {
            let n = match self.chunk {
                Some(n) => n,
                None => self.sizer.next_size(
                    self.source.limit().min(MAX_IN_FLIGHT / buffer),
                    self.source.target(),
                ),
            };
            match self.source.next_chunk(n) {
                None => self.exhausted = true,
                Some((len, outcome)) => {
                    let span = Span {
                        first: self.read,
                        len,
                    };
                    self.read += len;
                    if outcome.is_err() {
                        // The executor is gone: stop reading the input.
                        self.exhausted = true;
                    }
                    push((span, outcome));
                    in_flight += 1;
                }
            }
        }
    }

    /// How many results may still come, given `known` results certain to come (in hand or in
    /// flight). Exact for a sized input without a deadline (while the executor accepts the
    /// map's tasks: a refusal ends the map early); with a deadline, the map may end with its
    /// timeout error at any point.
    fn size_hint(&self, known: usize) -> (usize, Option<usize>) {
        if self.finished {
            return (0, Some(0));
        }
        let (lo, hi) = if self.exhausted {
            (0, Some(0))
        } else {
            self.source.size_hint()
        };
        let lo = known.saturating_add(lo);
        let hi = hi.and_then(|hi| hi.checked_add(known));
        match self.deadline {
            Some(_) => (lo.min(1), hi),
            None => (lo, hi),
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

/// Results in hand: a chunk's items, or one error standing for each item of a chunk that
/// failed as a whole. Each item's index comes along.
struct Ready<T> {
    next: usize,
    /// The values of a chunk that fully succeeded, read first.
    values: std::vec::IntoIter<T>,
    items: FewIter<Result<T, Box<TaskError>>>,
    /// An error for the next `n` items.
    repeat: Option<(MapError, usize)>,
}

impl<T> Ready<T> {
    fn empty() -> Self {
        Ready {
            next: 0,
            values: Vec::new().into_iter(),
            items: FewIter::One(None),
            repeat: None,
        }
    }

    fn chunk(span: Span, chunk: Chunk<T>) -> Self {
        let (values, items) = match chunk {
            Chunk::Values(Few::Many(values)) => (values.into_iter(), FewIter::One(None)),
            Chunk::Values(Few::One(value)) => {
                (Vec::new().into_iter(), FewIter::One(Some(Ok(value))))
            }
            Chunk::Results(results) => (Vec::new().into_iter(), results.into_iter()),
        };
        Ready {
            next: span.first,
            values,
            items,
            repeat: None,
        }
    }

    fn failed(span: Span, err: MapError) -> Self {
        Ready {
            next: span.first,
            values: Vec::new().into_iter(),
            items: FewIter::One(None),
            repeat: (span.len > 0).then_some((err, span.len)),
        }
    }

    fn len(&self) -> usize {
        self.values.len() + self.items.len() + self.repeat.as_ref().map_or(0, |(_, n)| *n)
    }

    /// The next result without its index: the ordered map's hot path, one branch per item
    /// of a chunk that fully succeeded.
    #[inline]
    fn pop_value(&mut self) -> Option<Result<T, MapError>> {
        match self.values.next() {
            Some(value) => Some(Ok(value)),
            None => self.pop_result(),
        }
    }

    fn pop(&mut self) -> Option<(usize, Result<T, MapError>)> {
        let item = match self.values.next() {
            Some(value) => Ok(value),
            None => self.pop_result()?,
        };
        self.next += 1;
        Some((self.next - 1, item))
    }

    fn pop_result(&mut self) -> Option<Result<T, MapError>> {
        Some(match self.items.next() {
            Some(item) => item.map_err(|e| MapError::Task(*e)),
            None => {
                let (err, n) = self.repeat.as_mut()?;
                *n -= 1;
                let err = if *n == 0 {
                    self.repeat.take().expect("just matched").0
                } else {
                    err.clone()
                };
                Err(err)
            }
        })
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
#[must_use = "a map is lazy: nothing is submitted until it is iterated"]
pub struct Map<'a, T: Send + 'static> {
    feed: Feed<'a, T>,
    in_flight: VecDeque<Pending<T>>,
    /// Results of the chunk at the front, not yet yielded.
    ready: Ready<T>,
}

impl<'a, T: Send + 'static> Map<'a, T> {
    pub(crate) fn new(source: Source<'a, T>, buffer: usize) -> Self {
        Map {
            feed: Feed::new(source, buffer),
            in_flight: VecDeque::new(),
            ready: Ready::empty(),
        }
    }

    /// A map whose executor keeps `buffer` chunks in flight for fixed chunk sizes, and the
    /// buffer given to `new` for the adaptive default.
    #[cfg(feature = "redis")]
    pub(crate) fn with_fixed_buffer(mut self, buffer: usize) -> Self {
        self.feed.fixed_buffer = Some(buffer.max(1));
        self
    }

    /// Refills the window; `waiting` counts a task already taken off the front but not yet
    /// yielded, which still counts against the buffer (as Python's `buffersize` does).
    fn fill(&mut self, waiting: usize) {
        let in_flight = &mut self.in_flight;
        self.feed
            .fill(in_flight.len() + waiting, |f| in_flight.push_back(f));
    }

    /// Gives up `timeout` after the call to `map` (not after this call, nor per item): from
    /// then on no more input is read, the tasks in flight are cancelled, and the iterator
    /// yields [`MapError::Timeout`] once and ends. (Python still yields results that are
    /// done when its deadline has passed; here the deadline is final.)
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{MapError, ThreadPoolExecutor};
    /// use std::time::Duration;
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let out: Vec<_> = pool
    ///     .map(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), [0, 10_000])
    ///     .timeout(Duration::from_millis(100))
    ///     .collect();
    /// assert_eq!(out, [Ok(()), Err(MapError::Timeout)]); // then it ends
    /// ```
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
        self.feed.set_buffer(tasks);
        self
    }

    /// How many items each task takes, at least 1 (Python's `chunksize`); exactly that many
    /// (the last chunk may be shorter). By default the size adapts: the first tasks take one
    /// item each, so the first result comes as early as it can; then, while items are cheap
    /// next to the per-task overhead, chunks grow (at most doubling) until each is worth
    /// about 2 ms of the workers' time (5 ms on Redis), and they stay at one item while
    /// items are slow. Set it by hand to pin a size, for instance when items vary so much
    /// that the recent ones say little about the next ones.
    /// A panic still fails only its own item; a chunk that fails as a whole (cancelled, or a
    /// broken executor) yields its error once for each of its items, so the output always
    /// has one result per input item, in order.
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
        self.feed.chunk = Some(items.max(1));
        self
    }

    /// Collects every value in input order, or stops at the first error and returns it,
    /// cancelling the tasks in flight that have not started: what
    /// `collect::<Result<Vec<T>, MapError>>()` gives, several times faster for tiny items.
    ///
    /// The iterator hands over one result per call, and for items that take nanoseconds
    /// that hand-over, on the caller's one thread, is most of the map's time. This takes a
    /// chunk's values at a time instead (one copy of each chunk into the output): a map of
    /// a million `x * 2 + 1` takes about half the time of `collect` (BENCHMARKS.md, "map
    /// without tuning"). The output is allocated once when the input says its length.
    ///
    /// # Errors
    ///
    /// The first error in input order: [`MapError::Task`] for an item that failed,
    /// [`MapError::Refused`] when the executor refused a chunk, or [`MapError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{MapError, ThreadPoolExecutor};
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let doubled = pool.map(|x: u64| x * 2, 0..100_000).try_collect_vec()?;
    /// assert_eq!(doubled.len(), 100_000);
    /// assert_eq!(doubled[99_999], 199_998);
    ///
    /// let first_error = pool
    ///     .map(|x: u32| { assert!(x % 1000 != 999, "no {x}"); x }, 0..10_000)
    ///     .try_collect_vec();
    /// assert!(matches!(first_error, Err(MapError::Task(e)) if e.to_string().contains("no 999")));
    /// # Ok::<(), MapError>(())
    /// ```
    pub fn try_collect_vec(mut self) -> Result<Vec<T>, MapError> {
        let mut out = Vec::with_capacity(self.size_hint().0);
        loop {
            out.extend(self.ready.values.by_ref());
            match self.next_chunk() {
                None => return Ok(out),
                Some(Ok(value)) => out.push(value),
                Some(Err(err)) => return Err(err),
            }
        }
    }

    fn cancel_all(&mut self) {
        for (_, fut) in self.in_flight.drain(..) {
            if let Ok(fut) = fut {
                fut.cancel();
            }
        }
    }

    fn time_out(&mut self) -> Option<Result<T, MapError>> {
        self.cancel_all();
        self.feed.finished = true;
        Some(Err(MapError::Timeout))
    }
}

impl<T: Send + 'static> Iterator for Map<'_, T> {
    type Item = Result<T, MapError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        // The hot path, small enough to inline into the caller's loop: a result in hand.
        match self.ready.pop_value() {
            Some(item) => Some(item),
            None => self.next_chunk(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let in_flight: usize = self.in_flight.iter().map(|(span, _)| span.len).sum();
        self.feed.size_hint(self.ready.len() + in_flight)
    }
}

impl<T: Send + 'static> Map<'_, T> {
    /// The rest of `next`: waits for the chunk at the front and yields its first result.
    #[inline(never)]
    fn next_chunk(&mut self) -> Option<Result<T, MapError>> {
        loop {
            if let Some(item) = self.ready.pop_value() {
                return Some(item);
            }
            if self.feed.finished {
                return None;
            }
            if self.feed.expired() {
                return self.time_out();
            }
            self.fill(0);
            let Some((span, front)) = self.in_flight.pop_front() else {
                if self.feed.expired() {
                    return self.time_out(); // the input was still being read
                }
                self.feed.finished = true;
                return None;
            };
            self.fill(1); // keep the workers busy while we wait
            let fut = match front {
                Ok(fut) => fut,
                Err(reason) => {
                    self.ready = Ready::failed(span, MapError::Refused(reason));
                    continue;
                }
            };
            let chunk = match self.feed.deadline {
                None => fut.result(),
                Some(deadline) => match fut.result_deadline(deadline) {
                    Ok(chunk) => Ok(chunk),
                    Err(ResultTimeoutError::Failed(err)) => Err(err),
                    Err(ResultTimeoutError::Timeout(fut)) => {
                        fut.cancel();
                        return self.time_out();
                    }
                },
            };
            self.feed.done(span.len);
            self.ready = match chunk {
                Ok(chunk) => Ready::chunk(span, chunk),
                Err(err) => Ready::failed(span, MapError::Task(err)),
            };
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
            .field("buffer", &self.feed.window())
            .field("chunk", &self.feed.chunk)
            .field("deadline", &self.feed.deadline)
            .finish_non_exhaustive()
    }
}

/// The results of [`ThreadPoolExecutor::map_unordered`](crate::ThreadPoolExecutor::map_unordered),
/// in completion order: Python's `imap_unordered`. (With chunks, a chunk's items come
/// together, in input order, when the chunk completes.) Each input item yields exactly one
/// result; [`with_index`](Self::with_index) tells which.
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
#[must_use = "a map is lazy: nothing is submitted until it is iterated"]
pub struct MapUnordered<'a, T: Send + 'static> {
    feed: Feed<'a, T>,
    in_flight: AsCompleted<(Span, Future<Chunk<T>>)>,
    /// The items of the chunks in flight.
    in_flight_items: usize,
    /// A refused chunk, to report once per item.
    refused: Option<(Span, Arc<str>)>,
    ready: Ready<T>,
}

impl<'a, T: Send + 'static> MapUnordered<'a, T> {
    pub(crate) fn new(source: Source<'a, T>, buffer: usize) -> Self {
        MapUnordered {
            feed: Feed::new(source, buffer),
            in_flight: as_completed(Vec::new()),
            in_flight_items: 0,
            refused: None,
            ready: Ready::empty(),
        }
    }

    /// As [`Map::with_fixed_buffer`].
    #[cfg(feature = "redis")]
    pub(crate) fn with_fixed_buffer(mut self, buffer: usize) -> Self {
        self.feed.fixed_buffer = Some(buffer.max(1));
        self
    }

    fn fill(&mut self) {
        let (in_flight, items, refused) = (
            &mut self.in_flight,
            &mut self.in_flight_items,
            &mut self.refused,
        );
        self.feed.fill(in_flight.remaining(), |(span, f)| match f {
            Ok(fut) => {
                *items += span.len;
                in_flight.push((span, fut));
            }
            Err(reason) => *refused = Some((span, reason)),
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
        self.feed.set_buffer(tasks);
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
        self.feed.chunk = Some(items.max(1));
        self
    }

    /// Yields each result with the index of its input item, so that a result (or a failure)
    /// can be matched with what produced it: every input item's index appears exactly once,
    /// except after a [`MapError::Timeout`], which carries the lowest index given up and ends
    /// the iteration.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let words = ["a", "bb", "ccc"];
    /// for (i, len) in pool.map_unordered(|w: &str| w.len(), words).with_index() {
    ///     assert_eq!(len?, words[i].len());
    /// }
    /// # Ok::<(), concurrent_futures::MapError>(())
    /// ```
    pub fn with_index(self) -> MapUnorderedIndexed<'a, T> {
        MapUnorderedIndexed { inner: self }
    }

    fn cancel_all(&mut self) -> usize {
        let mut lowest = self.feed.read;
        for (span, fut) in self.in_flight.release() {
            fut.cancel();
            lowest = lowest.min(span.first);
        }
        self.in_flight_items = 0;
        lowest
    }

    fn next_indexed(&mut self) -> Option<(usize, Result<T, MapError>)> {
        loop {
            if let Some(item) = self.ready.pop() {
                return Some(item);
            }
            if self.feed.finished {
                return None;
            }
            if !self.feed.expired() {
                self.fill();
            }
            if let Some((span, reason)) = self.refused.take() {
                self.ready = Ready::failed(span, MapError::Refused(reason));
                continue;
            }
            let key = if self.feed.expired() {
                None
            } else if self.in_flight.remaining() == 0 {
                self.feed.finished = true;
                return None;
            } else {
                self.in_flight.next_until(self.feed.deadline)
            };
            match key {
                Some((span, fut)) => {
                    self.in_flight_items -= span.len;
                    self.feed.done(span.len);
                    self.fill();
                    self.ready = match fut.result() {
                        Ok(chunk) => Ready::chunk(span, chunk),
                        Err(err) => Ready::failed(span, MapError::Task(err)),
                    };
                }
                None => {
                    let lowest = self.cancel_all();
                    self.feed.finished = true;
                    return Some((lowest, Err(MapError::Timeout)));
                }
            }
        }
    }
}

impl<T: Send + 'static> MapUnordered<'_, T> {
    fn hint(&self) -> (usize, Option<usize>) {
        let refused = self.refused.as_ref().map_or(0, |(span, _)| span.len);
        self.feed
            .size_hint(self.ready.len() + self.in_flight_items + refused)
    }
}

impl<T: Send + 'static> Iterator for MapUnordered<'_, T> {
    type Item = Result<T, MapError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_indexed().map(|(_, item)| item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.hint()
    }
}

/// [`MapUnordered`] with the index of each result's input item: made by
/// [`MapUnordered::with_index`].
///
/// # Examples
///
/// ```
/// # use concurrent_futures::ThreadPoolExecutor;
/// let pool = ThreadPoolExecutor::new();
/// let mut seen: Vec<usize> = pool.map_unordered(|x: u8| x, 0..5).with_index().map(|(i, _)| i).collect();
/// seen.sort();
/// assert_eq!(seen, [0, 1, 2, 3, 4]);
/// ```
#[derive(Debug)]
#[must_use = "a map is lazy: nothing is submitted until it is iterated"]
pub struct MapUnorderedIndexed<'a, T: Send + 'static> {
    inner: MapUnordered<'a, T>,
}

impl<T: Send + 'static> Iterator for MapUnorderedIndexed<'_, T> {
    type Item = (usize, Result<T, MapError>);

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next_indexed()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.hint()
    }
}

impl<T: Send + 'static> std::iter::FusedIterator for MapUnorderedIndexed<'_, T> {}

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
            .field("buffer", &self.feed.window())
            .field("chunk", &self.feed.chunk)
            .field("deadline", &self.feed.deadline)
            .finish_non_exhaustive()
    }
}
