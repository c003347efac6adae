//! [`ThreadPoolExecutor::map_slice`]: Python's blocking `Pool.map` over a slice, with the
//! results written in place by the workers.
//!
//! `map` is a lazy iterator: one thread, the caller's, reads the input into chunks and takes
//! every result out, which for items that take nanoseconds is most of the time. Over a slice
//! neither is needed. The pool's workers (one task each, in a [`Scope`](super::Scope), so the
//! closure and the items are borrowed) claim ranges of indices from one atomic counter and
//! write each result straight into its slot of the output vector.
//!
//! # How the output is made sound
//!
//! The output is a `Vec<R>` with capacity for every item and length 0 until the end. Each
//! index is claimed by exactly one task (a compare-and-swap on `next` hands out disjoint
//! ranges), and only that task writes its slot. A range is recorded in `written` once every
//! slot of it holds a value; a range cut short by a panic drops the values it wrote before
//! the failure is recorded. The scope returns only after every task has ended, which orders
//! all their writes before the caller's reads. The length is then set only if `written`
//! covers every index; otherwise the values of `written` are dropped in place and an error
//! returned, so no slot is read or dropped unless it was written, and none twice.

use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::ThreadPoolExecutor;
use crate::error::{MapError, TaskError};

/// How many claims a task's share is cut into at most: each claim takes this fraction of the
/// items still unclaimed (guided self-scheduling), so the first claims are large (cheap items
/// pay the claim once per many items) and the last ones take one item (slow or uneven items
/// leave no worker idle for long at the end).
const CLAIMS_PER_TASK: usize = 4;

/// The output's buffer, shared by the tasks that fill it.
struct Slots<R>(*mut R);

// SAFETY: the tasks write values of `R` into disjoint slots and the caller takes them
// (module docs): values move between threads, which `R: Send` allows. No `&R` is shared.
#[allow(unsafe_code)]
unsafe impl<R: Send> Sync for Slots<R> {}

/// What the tasks of one `map_slice` share.
struct Job<'a, A, R, F> {
    f: &'a F,
    items: &'a [A],
    slots: Slots<R>,
    /// The first index not yet claimed.
    next: AtomicUsize,
    /// Set on the first failure: no more claims.
    stop: AtomicBool,
    /// How many claims the unclaimed items are shared into.
    parts: usize,
    /// The ranges whose every slot holds a value.
    written: Mutex<Vec<Range<usize>>>,
    /// The failure with the lowest index seen.
    failed: Mutex<Option<(usize, TaskError)>>,
}

impl<A, R, F> Job<'_, A, R, F>
where
    F: Fn(&A) -> R,
{
    /// A range of indices no other task has, or `None` when all are claimed or a task failed.
    fn claim(&self) -> Option<Range<usize>> {
        let n = self.items.len();
        // ORDERING: `next` only hands out indices; the slots' contents are ordered by the
        // scope's end (module docs), so nothing is published through this counter.
        let mut start = self.next.load(Ordering::Relaxed);
        loop {
            if start >= n || self.stop.load(Ordering::Relaxed) {
                return None;
            }
            let len = ((n - start) / self.parts).max(1);
            match self.next.compare_exchange_weak(
                start,
                start + len,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(start..start + len),
                Err(now) => start = now,
            }
        }
    }

    /// One task: claims ranges and fills their slots until none is left.
    fn run(&self) {
        while let Some(range) = self.claim() {
            let mut filled = range.start;
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                for i in range.clone() {
                    let value = (self.f)(&self.items[i]);
                    #[allow(unsafe_code)]
                    // SAFETY: `i < items.len()`, the output's capacity, and slot `i` belongs
                    // to this claim alone (`claim` hands out disjoint ranges); it is empty, so
                    // nothing is overwritten without being dropped.
                    unsafe {
                        self.slots.0.add(i).write(value);
                    }
                    filled = i + 1;
                }
            }));
            match outcome {
                Ok(()) => self.written.lock().push(range),
                Err(payload) => {
                    // ORDERING: a hint to stop claiming; the failure itself is under a lock.
                    self.stop.store(true, Ordering::Relaxed);
                    {
                        let mut failed = self.failed.lock();
                        if failed.as_ref().is_none_or(|(at, _)| filled < *at) {
                            *failed = Some((filled, TaskError::from_panic(payload)));
                        }
                    }
                    let done = range.start..filled;
                    #[allow(unsafe_code)]
                    // SAFETY: the slots of `done` were written by this claim just above and
                    // are not recorded in `written`, so nothing else drops or reads them.
                    unsafe {
                        drop_slots(&self.slots, done);
                    }
                    return;
                }
            }
        }
    }
}

/// Drops the values in the slots of `range`.
///
/// # Safety
///
/// Every slot of `range` holds a value that nothing else will read or drop.
#[allow(unsafe_code)]
unsafe fn drop_slots<R>(slots: &Slots<R>, range: Range<usize>) {
    // SAFETY: the caller guarantees the slots hold values owned by no one else.
    unsafe {
        std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
            slots.0.add(range.start),
            range.len(),
        ));
    }
}

impl ThreadPoolExecutor {
    /// Applies `f` to every item of `items` on the pool's workers and returns the results in
    /// order: Python's `Pool.map(fn, list)`, which blocks and returns a list. Unlike
    /// [`map`](Self::map), `f` may borrow from the caller (it need not be `'static`), and the
    /// workers write each result straight into its place in the output, so tiny items cost
    /// what they cost under rayon's `par_iter().map().collect()` (BENCHMARKS.md, "map without
    /// tuning"). Nothing needs tuning: each worker claims a quarter of its share of what is
    /// left at a time, so the first claims are large and the last take one item.
    ///
    /// The pool's workers run the items (one task each, at most `max_workers`); the calling
    /// thread waits, or, on one of the pool's own workers, runs the tasks it waits for.
    ///
    /// # Errors
    ///
    /// - [`MapError::Task`] with [`TaskError::Panicked`] if `f` panicked: no further ranges
    ///   are claimed, the results already made are dropped, and the error is that of the
    ///   lowest index among the items that failed (others may not have run).
    /// - [`MapError::Refused`] if the pool refused the tasks (it was shut down), and
    ///   [`MapError::Task`] with the task's error if it shut down with `cancel_futures`
    ///   before every item was claimed.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let words = vec!["apple".to_string(), "fig".to_string(), "cherry".to_string()];
    /// let suffix = String::from("!"); // borrowed by the closure: no `move`, no `'static`
    /// let shouted = pool.map_slice(|w| format!("{w}{suffix}"), &words)?;
    /// assert_eq!(shouted, ["apple!", "fig!", "cherry!"]);
    ///
    /// let squares = pool.map_slice(|x: &u64| x * x, &(0..1_000_000).collect::<Vec<u64>>())?;
    /// assert_eq!(squares[999_999], 999_998_000_001);
    /// # Ok::<(), concurrent_futures::MapError>(())
    /// ```
    ///
    /// A panic is the result:
    ///
    /// ```
    /// # use concurrent_futures::{MapError, TaskError, ThreadPoolExecutor};
    /// let pool = ThreadPoolExecutor::new();
    /// let out = pool.map_slice(|x: &i32| 100 / x, &[5, 0, 2]);
    /// assert!(matches!(out, Err(MapError::Task(TaskError::Panicked(m))) if m.contains("divide by zero")));
    /// ```
    pub fn map_slice<A, R, F>(&self, f: F, items: &[A]) -> Result<Vec<R>, MapError>
    where
        A: Sync,
        R: Send,
        F: Fn(&A) -> R + Sync,
    {
        let n = items.len();
        let mut out: Vec<R> = Vec::with_capacity(n);
        if n == 0 {
            return Ok(out);
        }
        let tasks = self.max_workers().clamp(1, n);
        let job = Job {
            f: &f,
            items,
            slots: Slots(out.as_mut_ptr()),
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            parts: tasks * CLAIMS_PER_TASK,
            written: Mutex::new(Vec::new()),
            failed: Mutex::new(None),
        };
        // Why a task did not run, if one did not: refused at submit, or failed (cancelled).
        let not_run: Option<MapError> = self.scope(|s| {
            let mut futures = Vec::with_capacity(tasks);
            for _ in 0..tasks {
                match s.submit(|| job.run()) {
                    Ok(fut) => futures.push(fut),
                    Err(refused) => {
                        if futures.is_empty() {
                            return Some(MapError::Refused(refused.to_string().into()));
                        }
                        break; // the tasks already queued claim every item
                    }
                }
            }
            futures
                .into_iter()
                .filter_map(|fut| fut.result().err())
                .map(MapError::Task)
                .next()
        });
        // Every task has ended: the scope waited for them.
        let written = std::mem::take(&mut *job.written.lock());
        let failed = job.failed.lock().take();
        let complete = written.iter().map(Range::len).sum::<usize>() == n;
        if failed.is_none() && complete {
            #[allow(unsafe_code)]
            // SAFETY: `written` holds disjoint ranges (each from one claim) whose slots all
            // hold values, and they cover `n` indices below `n`, so every slot `0..n` is
            // initialized; the tasks have ended (the scope waited), so nothing writes them.
            unsafe {
                out.set_len(n);
            }
            return Ok(out);
        }
        for range in written {
            #[allow(unsafe_code)]
            // SAFETY: each recorded range holds values that nothing else owns: `out` keeps
            // length 0, so it drops none of them, and the tasks have ended.
            unsafe {
                drop_slots(&job.slots, range);
            }
        }
        Err(match (failed, not_run) {
            (Some((_, err)), _) => MapError::Task(err),
            (None, Some(err)) => err,
            (None, None) => MapError::Task(TaskError::BrokenExecutor(
                "the pool's tasks ended before every item was claimed".into(),
            )),
        })
    }
}
