//! [`wait`] and [`as_completed`]: consuming many futures as they finish.
//!
//! Both register one [`Collector`] on every pending future; each completion pushes that
//! future's index, so watching `n` futures costs O(n) in all. When they return or are
//! dropped, they take their registration back off the futures still pending, as Python does.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::context::is_worker;
use crate::error::TimeoutError;
use crate::future::{Collector, Future, SharedFuture, deadline_after};

impl<T: Send + 'static> Watch for Future<T> {
    fn done(&self) -> bool {
        Future::done(self)
    }

    fn failed(&self) -> bool {
        Future::failed(self)
    }

    fn watch(&self, collector: &Arc<Collector>, key: usize) -> bool {
        Future::watch(self, collector, key)
    }

    fn unwatch(&self, collector: &Arc<Collector>) {
        Future::unwatch(self, collector);
    }

    fn help(&self) -> bool {
        Future::help(self)
    }

    fn id(&self) -> usize {
        Future::id(self)
    }
}

/// Futures' identities are addresses: spread them with one multiply instead of SipHash, which
/// would cost more than the rest of `as_completed`'s bookkeeping per future.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, id: usize) {
        self.0 = (id as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(26);
    }
}

/// A set of futures' identities.
type Ids = HashSet<usize, BuildHasherDefault<IdHasher>>;

mod sealed {
    /// The erased view of a future that `wait` and `as_completed` need. Public in name only:
    /// this module is private, which seals [`Waitable`](super::Waitable).
    pub trait Watch {
        fn done(&self) -> bool;
        /// Done with an error (not cancelled).
        fn failed(&self) -> bool;
        /// Registers the collector with `key`; false if already done (nothing registered).
        fn watch(&self, collector: &super::Arc<super::Collector>, key: usize) -> bool;
        fn unwatch(&self, collector: &super::Arc<super::Collector>);
        /// Runs the task inline if this thread is a worker of its pool and it is queued.
        fn help(&self) -> bool;
        /// The same for every handle of one future (a `&Future`, clones of a shared one).
        fn id(&self) -> usize;
    }

    pub trait Sealed {
        fn handle(&self) -> &dyn Watch;
        /// True if no other value can stand for the same future: an owned [`Future`] is
        /// the only handle of its kind, so a set of them has no duplicates to look for.
        ///
        /// [`Future`]: super::Future
        fn unique(&self) -> bool {
            false
        }
    }
}

use sealed::Watch;

/// What [`wait`] and [`as_completed`] accept: a [`Future`], a `&Future`, a
/// [`SharedFuture`], a `&SharedFuture` (so the keys of a map of shared futures can be
/// waited on in place), or a `(key, future)` pair whose key rides along (Python's
/// `{executor.submit(f, x): x for x in xs}` idiom).
///
/// This trait is sealed.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{as_completed, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new();
/// let pairs: Vec<_> = ["a", "bb"]
///     .into_iter()
///     .map(|word| (word, pool.submit(move || word.len()).unwrap()))
///     .collect();
/// for (word, fut) in as_completed(pairs) {
///     assert_eq!(fut.result()?, word.len());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Waitable: sealed::Sealed {
    /// Returns `true` if the future finished or was cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{Promise, Waitable};
    ///
    /// let (promise, future) = Promise::new();
    /// promise.set_result(()).unwrap();
    /// assert!(("key", &future).is_done());
    /// ```
    fn is_done(&self) -> bool {
        self.handle().done()
    }
}

impl<T: Send + 'static> sealed::Sealed for Future<T> {
    fn handle(&self) -> &dyn Watch {
        self
    }

    fn unique(&self) -> bool {
        true
    }
}
impl<T: Send + 'static> Waitable for Future<T> {}

impl<T: Send + 'static> sealed::Sealed for &Future<T> {
    fn handle(&self) -> &dyn Watch {
        *self
    }
}
impl<T: Send + 'static> Waitable for &Future<T> {}

impl<T: Send + 'static> sealed::Sealed for SharedFuture<T> {
    fn handle(&self) -> &dyn Watch {
        self.future()
    }
}
impl<T: Send + 'static> Waitable for SharedFuture<T> {}

impl<T: Send + 'static> sealed::Sealed for &SharedFuture<T> {
    fn handle(&self) -> &dyn Watch {
        self.future()
    }
}
impl<T: Send + 'static> Waitable for &SharedFuture<T> {}

impl<K, F: Waitable> sealed::Sealed for (K, F) {
    fn handle(&self) -> &dyn Watch {
        self.1.handle()
    }

    fn unique(&self) -> bool {
        self.1.unique()
    }
}
impl<K, F: Waitable> Waitable for (K, F) {}

use sealed::Sealed as _;

/// When [`wait`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`, `ALL_COMPLETED`).
///
/// # Examples
///
/// ```
/// assert_eq!(concurrent_futures::ReturnWhen::default(),
///            concurrent_futures::ReturnWhen::AllCompleted);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReturnWhen {
    /// As soon as any future finishes or is cancelled.
    FirstCompleted,
    /// As soon as any future finishes with an error (cancellation is not an error);
    /// otherwise when all are done.
    FirstException,
    /// When every future is done.
    #[default]
    AllCompleted,
}

/// Waits for `futures` until `return_when` holds or `timeout` passes, and returns them split
/// into `(done, not_done)`, each in the order given. A timeout is not an error: the
/// unfinished futures are in `not_done`.
///
/// Python: `concurrent.futures.wait(fs, timeout, return_when)`. Unlike CPython, cancelling a
/// future wakes `wait` at once (python/cpython#92001).
///
/// # Examples
///
/// ```
/// use concurrent_futures::{wait, ReturnWhen, ThreadPoolExecutor};
/// use std::time::Duration;
///
/// let pool = ThreadPoolExecutor::new();
/// let futs: Vec<_> = (0..4u64).map(|i| pool.submit(move || i * i).unwrap()).collect();
/// let (done, not_done) = wait(futs, Some(Duration::from_secs(10)), ReturnWhen::AllCompleted);
/// assert_eq!(done.len(), 4);
/// assert!(not_done.is_empty());
/// ```
pub fn wait<I>(
    futures: I,
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> (Vec<I::Item>, Vec<I::Item>)
where
    I: IntoIterator,
    I::Item: Waitable,
{
    let deadline = timeout.map(deadline_after);
    // The same future given twice counts once, as in Python (`set(fs)`).
    let mut seen = Ids::default();
    let futures: Vec<I::Item> = futures
        .into_iter()
        .filter(|f| f.unique() || seen.insert(f.handle().id()))
        .collect();
    drop(seen);
    let satisfied = |futures: &[I::Item]| {
        let mut all = true;
        for f in futures {
            let f = f.handle();
            if !f.done() {
                all = false;
            } else if return_when == ReturnWhen::FirstCompleted
                || (return_when == ReturnWhen::FirstException && f.failed())
            {
                return true;
            }
        }
        all
    };
    if !satisfied(&futures) {
        if deadline.is_none() && is_worker() {
            // A worker waiting on its own pool's queued tasks runs them instead.
            for f in &futures {
                f.handle().help();
            }
        }
        let collector = Arc::new(Collector::new());
        let mut pending = 0;
        for (key, f) in futures.iter().enumerate() {
            if f.handle().watch(&collector, key) {
                pending += 1;
            }
        }
        while pending > 0 && !satisfied(&futures) {
            match collector.pop(deadline) {
                Some(_) => pending -= 1,
                None => break,
            }
        }
        for f in &futures {
            f.handle().unwatch(&collector);
        }
    }
    futures.into_iter().partition(|f| f.is_done())
}

/// An iterator over futures in the order they finish: Python's `as_completed`.
///
/// Made by [`as_completed`]. Futures already done when it is made come first. Each future is
/// yielded exactly once. More futures can be added while iterating with
/// [`push`](Self::push). [`into_stream`](Self::into_stream) makes it a
/// [`Stream`](futures_core::Stream) for async code.
/// [`timeout`](Self::timeout) gives an iterator that stops with a [`TimeoutError`] at a
/// deadline, leaving the unfinished futures recoverable.
///
/// The futures not yet yielded are released (and their registrations removed) on drop.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{as_completed, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new();
/// let mut it = as_completed((0..3).map(|i| pool.submit(move || i).unwrap()));
/// let mut seen = Vec::new();
/// while let Some(fut) = it.next() {
///     let v = fut.result()?;
///     if v == 0 {
///         it.push(pool.submit(|| 10)?); // add work while iterating
///     }
///     seen.push(v);
/// }
/// seen.sort();
/// assert_eq!(seen, [0, 1, 2, 10]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "iterators are lazy: iterate it to get the futures as they finish"]
pub struct AsCompleted<F: Waitable> {
    /// Futures not yet yielded, by key; a yielded future's slot is reused, so memory follows
    /// the futures in flight, not all that ever passed through (`map_unordered` over an
    /// endless input).
    slots: Vec<Option<Slot<F>>>,
    free: Vec<usize>,
    /// The identities of the futures in `slots`: one given twice is watched once. Left empty
    /// for owned `Future`s, which cannot be given twice (see `Sealed::unique`).
    present: Ids,
    collector: Arc<Collector>,
    remaining: usize,
    /// Insertion counter, so `into_remaining` keeps the order given.
    pushed: u64,
    /// Keys not yet offered to `help`.
    unhelped: Vec<usize>,
}

struct Slot<F> {
    seq: u64,
    future: F,
}

/// Yields `futures` as they finish. See [`AsCompleted`].
///
/// # Examples
///
/// ```
/// use concurrent_futures::{as_completed, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new();
/// let futs = vec![pool.submit(|| 1)?, pool.submit(|| 2)?];
/// let total: i32 = as_completed(futs).map(|f| f.result().unwrap()).sum();
/// assert_eq!(total, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn as_completed<I>(futures: I) -> AsCompleted<I::Item>
where
    I: IntoIterator,
    I::Item: Waitable,
{
    let mut it = AsCompleted {
        slots: Vec::new(),
        free: Vec::new(),
        present: Ids::default(),
        collector: Arc::new(Collector::new()),
        remaining: 0,
        pushed: 0,
        unhelped: Vec::new(),
    };
    let mut pending = Vec::new();
    // Two passes, so the futures done already are queued before any completion that a
    // registration could deliver.
    for f in futures {
        let done = f.is_done();
        if let Some(key) = it.insert(f) {
            if done {
                it.collector.notify(key);
            } else {
                pending.push(key);
            }
        }
    }
    for key in pending {
        it.register(key);
    }
    it
}

impl<F: Waitable> AsCompleted<F> {
    /// Stores a future unless the same one is already here; its key if stored.
    fn insert(&mut self, future: F) -> Option<usize> {
        if !future.unique() && !self.present.insert(future.handle().id()) {
            return None; // dropped: the one already here stands for it
        }
        let slot = Slot {
            seq: self.pushed,
            future,
        };
        self.pushed += 1;
        self.remaining += 1;
        let key = match self.free.pop() {
            Some(key) => {
                self.slots[key] = Some(slot);
                key
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.unhelped.push(key);
        Some(key)
    }

    fn register(&self, key: usize) {
        let f = &self.slots[key]
            .as_ref()
            .expect("registered slots are full")
            .future;
        if !f.handle().watch(&self.collector, key) {
            self.collector.notify(key); // done in between
        }
    }

    /// Adds a future to the set being watched.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{as_completed, Promise};
    ///
    /// let (p, first) = Promise::new();
    /// let mut it = as_completed([first]);
    /// let (q, second) = Promise::new();
    /// it.push(second);
    /// q.set_result(2).unwrap();
    /// p.set_result(1).unwrap();
    /// let got: Vec<u8> = it.map(|f| f.result().unwrap()).collect();
    /// assert_eq!(got, [2, 1]); // in completion order
    /// ```
    pub fn push(&mut self, future: F) {
        if let Some(key) = self.insert(future) {
            self.register(key);
        }
    }

    /// How many futures have not been yielded yet.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{as_completed, Promise};
    /// let (_p, f) = Promise::<()>::new();
    /// assert_eq!(as_completed([f]).remaining(), 1);
    /// ```
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Stops iterating and returns the futures not yet yielded, in the order given.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{as_completed, Promise};
    /// let (_p, f) = Promise::<u8>::new();
    /// let left = as_completed([f]).into_remaining();
    /// assert_eq!(left.len(), 1);
    /// ```
    pub fn into_remaining(mut self) -> Vec<F> {
        self.release()
    }

    /// Unregisters from and returns every future not yet yielded.
    pub(crate) fn release(&mut self) -> Vec<F> {
        let mut left: Vec<Slot<F>> = self.slots.drain(..).flatten().collect();
        left.sort_by_key(|slot| slot.seq);
        for slot in &left {
            slot.future.handle().unwatch(&self.collector);
        }
        self.free.clear();
        self.present.clear();
        self.unhelped.clear();
        self.remaining = 0;
        left.into_iter().map(|slot| slot.future).collect()
    }

    /// Turns the iterator into a [`Stream`](futures_core::Stream) for async code.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{as_completed, Promise};
    /// use futures::StreamExt;
    ///
    /// let (p, f) = Promise::new();
    /// p.set_result(5).unwrap();
    /// let mut stream = as_completed([f]).into_stream();
    /// let fut = futures::executor::block_on(stream.next()).unwrap();
    /// assert_eq!(fut.result().unwrap(), 5);
    /// ```
    pub fn into_stream(self) -> AsCompletedStream<F> {
        AsCompletedStream { inner: self }
    }

    /// Returns an iterator that gives up at `timeout` from now, yielding
    /// `Err(TimeoutError)` once and then ending; [`AsCompletedTimeout::into_remaining`]
    /// recovers the futures that did not finish.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{as_completed, Promise, TimeoutError};
    /// use std::time::Duration;
    ///
    /// let (_p, slow) = Promise::<u8>::new();
    /// let (q, fast) = Promise::<u8>::new();
    /// q.set_result(1).unwrap();
    /// let mut it = as_completed([slow, fast]).timeout(Duration::from_millis(20));
    /// assert_eq!(it.next().unwrap().unwrap().result(), Ok(1));
    /// assert_eq!(it.next().unwrap().unwrap_err(), TimeoutError);
    /// assert!(it.next().is_none());
    /// assert_eq!(it.into_remaining().len(), 1); // the slow one, still pending
    /// ```
    pub fn timeout(self, timeout: Duration) -> AsCompletedTimeout<F> {
        self.deadline(deadline_after(timeout))
    }

    /// Like [`timeout`](Self::timeout) with a deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{as_completed, Promise};
    /// # use std::time::Instant;
    /// let (_p, f) = Promise::<u8>::new();
    /// let mut it = as_completed([f]).deadline(Instant::now());
    /// assert!(it.next().unwrap().is_err());
    /// ```
    pub fn deadline(self, deadline: Instant) -> AsCompletedTimeout<F> {
        AsCompletedTimeout {
            inner: self,
            deadline,
            timed_out: false,
        }
    }

    fn take_slot(&mut self, key: usize) -> F {
        self.remaining -= 1;
        let slot = self.slots[key]
            .take()
            .expect("each key is delivered once (rule 2 of the future's state machine)");
        if !slot.future.unique() {
            self.present.remove(&slot.future.handle().id());
        }
        self.free.push(key);
        slot.future
    }

    /// Next finished future, waiting until `deadline`; `None` on timeout.
    pub(crate) fn next_until(&mut self, deadline: Option<Instant>) -> Option<F> {
        if let Some(key) = self.collector.try_pop() {
            return Some(self.take_slot(key));
        }
        if deadline.is_none() && is_worker() {
            // On a worker thread, run our own pool's queued tasks instead of deadlocking.
            // Each future is offered once, so this stays O(n) overall. Other threads skip
            // the list without touching the futures.
            for key in std::mem::take(&mut self.unhelped) {
                if let Some(slot) = &self.slots[key] {
                    slot.future.handle().help();
                }
            }
        } else if self.unhelped.len() > 2 * self.slots.len() {
            // Only waits without a deadline help; keep the list bounded meanwhile.
            let slots = &self.slots;
            self.unhelped.retain(|&key| slots[key].is_some());
            self.unhelped.sort_unstable();
            self.unhelped.dedup();
        }
        let key = self.collector.pop(deadline)?;
        Some(self.take_slot(key))
    }
}

impl<F: Waitable> Iterator for AsCompleted<F> {
    type Item = F;

    fn next(&mut self) -> Option<F> {
        if self.remaining == 0 {
            return None;
        }
        self.next_until(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<F: Waitable> ExactSizeIterator for AsCompleted<F> {}

impl<F: Waitable> std::iter::FusedIterator for AsCompleted<F> {}

/// [`AsCompleted`] as a [`Stream`](futures_core::Stream), for async code: made by
/// [`AsCompleted::into_stream`].
///
/// A separate type, so that `next()` on the iterator is never ambiguous when
/// `futures::StreamExt` is in scope. For a deadline, use the runtime's own timer
/// (`tokio::time::timeout` and the like).
///
/// # Examples
///
/// ```
/// use concurrent_futures::{as_completed, ThreadPoolExecutor};
/// use futures::StreamExt;
///
/// let pool = ThreadPoolExecutor::new();
/// let futs: Vec<_> = (1..=3).map(|i| pool.submit(move || i).unwrap()).collect();
/// let total = futures::executor::block_on(
///     as_completed(futs).into_stream().then(|f| f).fold(0, |acc, r| async move { acc + r.unwrap() }),
/// );
/// assert_eq!(total, 6);
/// ```
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct AsCompletedStream<F: Waitable> {
    inner: AsCompleted<F>,
}

impl<F: Waitable> AsCompletedStream<F> {
    /// Adds a future to the set being watched.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{as_completed, Future, Promise};
    /// let mut stream = as_completed(Vec::<Future<u8>>::new()).into_stream();
    /// let (p, f) = Promise::new();
    /// stream.push(f);
    /// # drop(p);
    /// ```
    pub fn push(&mut self, future: F) {
        self.inner.push(future);
    }

    /// Back to the blocking iterator.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{as_completed, Promise};
    /// let (_p, f) = Promise::<u8>::new();
    /// let it = as_completed([f]).into_stream().into_inner();
    /// assert_eq!(it.remaining(), 1);
    /// ```
    pub fn into_inner(self) -> AsCompleted<F> {
        self.inner
    }
}

impl<F: Waitable + Unpin> futures_core::Stream for AsCompletedStream<F> {
    type Item = F;

    /// Yields the next future to finish without blocking a thread.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F>> {
        let it = &mut self.inner;
        if it.remaining == 0 {
            return Poll::Ready(None);
        }
        match it.collector.poll_pop(cx) {
            Poll::Ready(key) => Poll::Ready(Some(it.take_slot(key))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.inner.remaining, Some(self.inner.remaining))
    }
}

impl<F: Waitable> Drop for AsCompleted<F> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<F: Waitable> fmt::Debug for AsCompleted<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// [`AsCompleted`] with a deadline: yields `Ok(future)` as futures finish, then
/// `Err(TimeoutError)` once if the deadline passes first, then ends.
///
/// Made by [`AsCompleted::timeout`]. Python's `as_completed(fs, timeout)` raises
/// `TimeoutError`; here the futures that did not finish stay recoverable with
/// [`into_remaining`](Self::into_remaining).
///
/// # Examples
///
/// ```
/// use concurrent_futures::{as_completed, ThreadPoolExecutor};
/// use std::time::Duration;
///
/// let pool = ThreadPoolExecutor::new();
/// let futs = vec![pool.submit(|| 1)?, pool.submit(|| 2)?];
/// for fut in as_completed(futs).timeout(Duration::from_secs(30)) {
///     println!("{}", fut?.result()?);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "iterators are lazy: iterate it to get the futures as they finish"]
pub struct AsCompletedTimeout<F: Waitable> {
    inner: AsCompleted<F>,
    deadline: Instant,
    timed_out: bool,
}

impl<F: Waitable> AsCompletedTimeout<F> {
    /// Adds a future to the set being watched (the deadline does not move).
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{as_completed, Promise, Future};
    /// # use std::time::Duration;
    /// let mut it = as_completed(Vec::<Future<u8>>::new()).timeout(Duration::from_secs(1));
    /// let (p, f) = Promise::new();
    /// p.set_result(5).unwrap();
    /// it.push(f);
    /// assert_eq!(it.next().unwrap().unwrap().result(), Ok(5));
    /// ```
    pub fn push(&mut self, future: F) {
        self.inner.push(future);
    }

    /// How many futures have not been yielded yet.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{as_completed, Promise};
    /// # use std::time::Duration;
    /// let (_p, f) = Promise::<()>::new();
    /// assert_eq!(as_completed([f]).timeout(Duration::ZERO).remaining(), 1);
    /// ```
    pub fn remaining(&self) -> usize {
        self.inner.remaining
    }

    /// Returns the futures not yet yielded, for instance the ones still running after a
    /// timeout, to cancel them or wait longer.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{as_completed, Promise};
    /// use std::time::Duration;
    ///
    /// let (_p, slow) = Promise::<u8>::new();
    /// let mut it = as_completed([slow]).timeout(Duration::from_millis(10));
    /// assert!(it.next().unwrap().is_err()); // timed out
    /// let left = it.into_remaining();
    /// assert_eq!(left.len(), 1); // still pending, to wait on again
    /// ```
    pub fn into_remaining(self) -> Vec<F> {
        let AsCompletedTimeout { inner, .. } = self;
        inner.into_remaining()
    }
}

impl<F: Waitable> Iterator for AsCompletedTimeout<F> {
    type Item = Result<F, TimeoutError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.timed_out || self.inner.remaining == 0 {
            return None;
        }
        match self.inner.next_until(Some(self.deadline)) {
            Some(f) => Some(Ok(f)),
            None => {
                self.timed_out = true;
                Some(Err(TimeoutError))
            }
        }
    }

    /// At most one item per future not yet yielded (the timeout error takes the place of
    /// the rest); at least one while any is left.
    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.timed_out {
            return (0, Some(0));
        }
        let left = self.inner.remaining;
        (left.min(1), Some(left))
    }
}

impl<F: Waitable> std::iter::FusedIterator for AsCompletedTimeout<F> {}

impl<F: Waitable> fmt::Debug for AsCompletedTimeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompletedTimeout")
            .field("remaining", &self.inner.remaining)
            .field("deadline", &self.deadline)
            .field("timed_out", &self.timed_out)
            .finish()
    }
}
