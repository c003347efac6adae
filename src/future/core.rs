//! The task cell behind every [`Future`]: state word, result slot, waiter list, closure.
//!
//! # State machine
//!
//! ```text
//! PENDING --claim----> RUNNING --finish--> FINISHED   (value, or error with the FAILED bit)
//! PENDING --finish---> FINISHED                       (promises and broken executors only)
//! PENDING --cancel---> CANCELLED
//! ```
//!
//! Rules the code cites:
//!
//! 1. Every transition happens with `inner` locked, and the state word is stored before the
//!    lock is released. The state word is a mirror that lets `done()`, `state()` and the fast
//!    paths read without locking; the lock is the truth.
//! 2. FINISHED and CANCELLED are final. The transition into either takes the whole waiter list
//!    out of `inner` under the lock; a waiter added after that finds the state final and is
//!    never queued (it runs or returns at once). So each waiter is notified exactly once.
//! 3. Waiters are notified after the lock is released: first the wake-ups (parked threads,
//!    wakers, collectors), then the callbacks in the order they were added. A panicking
//!    callback is caught and logged; the next one still runs.
//! 4. Only the thread that moved the state out of PENDING touches the closure: the claimer
//!    takes it to run it, the canceller or failer drops it. Nobody else ever locks `func`, so
//!    that lock is never contended.
//! 5. The value is moved out of the slot only by the single owner of the [`Future`]
//!    (`result(self)`) or once into a [`SharedFuture`](super::SharedFuture)'s cell; errors stay
//!    in the slot so that `exception()` keeps working.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::task::Waker;
use std::time::Instant;

use crossbeam_utils::CachePadded;

use super::collector::Collector;
use super::{Future, State};
use crate::error::TaskError;
use std::sync::atomic::AtomicIsize;
use std::sync::Arc;

use crate::sync::{self, AtomicU32, AtomicUsize, Mutex, Thread};

pub(crate) const PENDING: u32 = 0;
pub(crate) const RUNNING: u32 = 1;
pub(crate) const FINISHED: u32 = 2;
pub(crate) const CANCELLED: u32 = 3;
const STATE_MASK: u32 = 0b11;
/// Set with FINISHED when the future holds an error (not for CANCELLED, as in Python's
/// `FIRST_EXCEPTION`).
pub(crate) const FAILED: u32 = 0b100;

pub(crate) fn state_of(word: u32) -> State {
    match word & STATE_MASK {
        PENDING => State::Pending,
        RUNNING => State::Running,
        FINISHED => State::Finished,
        _ => State::Cancelled,
    }
}

pub(crate) fn is_done(word: u32) -> bool {
    word & STATE_MASK >= FINISHED
}

/// The shared part of every task, whatever its closure.
pub(crate) struct Core<T> {
    /// State bits (`PENDING`..`CANCELLED`, plus `FAILED`), mirrored from `inner` (rule 1).
    state: AtomicU32,
    /// The pool that runs the task, 0 for none: a worker of that pool waiting on the task
    /// while it is still queued runs it inline instead of deadlocking.
    owner: u32,
    inner: Mutex<Inner<T>>,
}

struct Inner<T> {
    slot: Slot<T>,
    waiters: Waiters<T>,
}

enum Slot<T> {
    Empty,
    Value(T),
    Error(TaskError),
    Taken,
}

/// A done-callback, boxed.
pub(crate) type Callback<T> = Box<dyn FnOnce(&Future<T>) + Send>;

/// Someone to tell when the future is done.
pub(crate) enum Waiter<T> {
    /// A thread blocked in `wait`/`result`: unparked.
    Thread(Thread),
    /// An `.await`ing task: woken.
    Waker(Waker),
    /// A `wait`/`as_completed` collector: told the key of this future.
    Collector(Arc<Collector>, usize),
    /// `add_done_callback`: called with the future.
    Callback(Callback<T>),
}

/// Most futures have zero or one waiter: keep that one inline.
enum Waiters<T> {
    None,
    One(Waiter<T>),
    Many(Vec<Waiter<T>>),
}

impl<T> Waiters<T> {
    fn push(&mut self, waiter: Waiter<T>) {
        *self = match std::mem::replace(self, Waiters::None) {
            Waiters::None => Waiters::One(waiter),
            Waiters::One(first) => Waiters::Many(vec![first, waiter]),
            Waiters::Many(mut all) => {
                all.push(waiter);
                Waiters::Many(all)
            }
        };
    }

    fn retain(&mut self, mut keep: impl FnMut(&Waiter<T>) -> bool) {
        match self {
            Waiters::None => {}
            Waiters::One(w) => {
                if !keep(w) {
                    *self = Waiters::None;
                }
            }
            Waiters::Many(all) => all.retain(keep),
        }
    }

    /// Replaces the waker of the owner's `.await` if there is one; returns false if not.
    fn replace_waker(&mut self, waker: &Waker) -> bool {
        let mut slot = None;
        match self {
            Waiters::None => {}
            Waiters::One(w) => slot = Some(w),
            Waiters::Many(all) => slot = all.iter_mut().find(|w| matches!(w, Waiter::Waker(_))),
        }
        match slot {
            Some(Waiter::Waker(old)) => {
                if !old.will_wake(waker) {
                    old.clone_from(waker);
                }
                true
            }
            _ => false,
        }
    }

    fn into_vec(self) -> Vec<Waiter<T>> {
        match self {
            Waiters::None => Vec::new(),
            Waiters::One(w) => vec![w],
            Waiters::Many(all) => all,
        }
    }
}

impl<T> Core<T> {
    pub(crate) fn new(owner: u32) -> Self {
        Core {
            state: AtomicU32::new(PENDING),
            owner,
            inner: Mutex::new(Inner {
                slot: Slot::Empty,
                waiters: Waiters::None,
            }),
        }
    }

    #[inline]
    pub(crate) fn word(&self) -> u32 {
        // ORDERING: Acquire pairs with the Release store in `transition`, so a reader that
        // sees FINISHED also sees the slot written before it (the slot is read under the lock
        // anyway; this makes the lock-free `done()` agree with it).
        self.state.load(Ordering::Acquire)
    }

    pub(crate) fn owner(&self) -> u32 {
        self.owner
    }

    /// A lock-free look: is the task still pending (claimable)? Only a hint.
    pub(crate) fn claim_peek(&self) -> bool {
        self.word() == PENDING
    }

    /// PENDING -> RUNNING. Returns false if the task was cancelled or already claimed.
    pub(crate) fn claim(&self) -> bool {
        let inner = self.inner.lock();
        if self.word() != PENDING {
            return false;
        }
        self.state.store(RUNNING, Ordering::Release); // rule 1
        drop(inner);
        true
    }

    /// PENDING or RUNNING -> FINISHED with `outcome`, then notifies (rules 2 and 3).
    /// Gives the outcome back if the future was already done.
    pub(crate) fn finish(
        &self,
        outcome: Result<T, TaskError>,
        fut: &Future<T>,
    ) -> Result<(), Result<T, TaskError>> {
        let mut inner = self.inner.lock();
        if is_done(self.word()) {
            return Err(outcome);
        }
        let word = match outcome {
            Ok(value) => {
                inner.slot = Slot::Value(value);
                FINISHED
            }
            Err(err) => {
                inner.slot = Slot::Error(err);
                FINISHED | FAILED
            }
        };
        self.state.store(word, Ordering::Release);
        let waiters = std::mem::replace(&mut inner.waiters, Waiters::None);
        drop(inner);
        notify(waiters, fut);
        Ok(())
    }

    /// PENDING -> CANCELLED, then notifies. True if the future is (now or already) cancelled.
    /// `on_cancel` runs after the transition and before the waiters are told (rule 4: the
    /// canceller drops the closure).
    pub(crate) fn cancel(&self, fut: &Future<T>, on_cancel: impl FnOnce()) -> bool {
        let mut inner = self.inner.lock();
        match self.word() & STATE_MASK {
            PENDING => {}
            CANCELLED => return true,
            _ => return false,
        }
        self.state.store(CANCELLED, Ordering::Release);
        let waiters = std::mem::replace(&mut inner.waiters, Waiters::None);
        drop(inner);
        on_cancel();
        notify(waiters, fut);
        true
    }

    /// Queues `waiter` unless the future is done, in which case it is handed back (rule 2).
    pub(crate) fn add_waiter(&self, waiter: Waiter<T>) -> Result<(), Waiter<T>> {
        let mut inner = self.inner.lock();
        if is_done(self.word()) {
            return Err(waiter);
        }
        inner.waiters.push(waiter);
        Ok(())
    }

    /// Registers or refreshes the owner's waker. Returns false if the future is done.
    pub(crate) fn register_waker(&self, waker: &Waker) -> bool {
        let mut inner = self.inner.lock();
        if is_done(self.word()) {
            return false;
        }
        if !inner.waiters.replace_waker(waker) {
            inner.waiters.push(Waiter::Waker(waker.clone()));
        }
        true
    }

    pub(crate) fn remove_thread(&self, thread: &Thread) {
        let id = thread.id();
        self.inner
            .lock()
            .waiters
            .retain(|w| !matches!(w, Waiter::Thread(t) if t.id() == id));
    }

    pub(crate) fn remove_collector(&self, collector: &Arc<Collector>) {
        self.inner
            .lock()
            .waiters
            .retain(|w| !matches!(w, Waiter::Collector(c, _) if Arc::ptr_eq(c, collector)));
    }

    /// Moves the outcome out (rule 5). The future must be done.
    pub(crate) fn take(&self) -> Result<T, TaskError> {
        let mut inner = self.inner.lock();
        match self.word() & STATE_MASK {
            CANCELLED => Err(TaskError::Cancelled),
            FINISHED => match std::mem::replace(&mut inner.slot, Slot::Taken) {
                Slot::Value(value) => Ok(value),
                Slot::Error(err) => {
                    inner.slot = Slot::Error(err.clone());
                    Err(err)
                }
                Slot::Empty | Slot::Taken => {
                    unreachable!("a finished future's value is taken once, by its owner")
                }
            },
            _ => unreachable!("take() on a future that is not done"),
        }
    }

    /// The error of a done future, if it has one. `None` while not done.
    pub(crate) fn error(&self) -> Option<TaskError> {
        let inner = self.inner.lock();
        match self.word() & STATE_MASK {
            CANCELLED => Some(TaskError::Cancelled),
            FINISHED => match &inner.slot {
                Slot::Error(err) => Some(err.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Blocks until the future is done or `deadline` passes; true if done.
    pub(crate) fn block_until(&self, deadline: Option<Instant>) -> bool {
        if is_done(self.word()) {
            return true;
        }
        let me = sync::current();
        if self.add_waiter(Waiter::Thread(me.clone())).is_err() {
            return true;
        }
        loop {
            // Spurious unparks (a stale token from an earlier wait) just loop.
            if is_done(self.word()) {
                return true;
            }
            match deadline {
                None => sync::park(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        self.remove_thread(&me);
                        return is_done(self.word());
                    }
                    sync::park_timeout(deadline - now);
                }
            }
        }
    }
}

/// Tells every waiter, wake-ups first, then callbacks in order (rule 3).
fn notify<T>(waiters: Waiters<T>, fut: &Future<T>) {
    let mut callbacks = Vec::new();
    for waiter in waiters.into_vec() {
        match waiter {
            Waiter::Thread(thread) => thread.unpark(),
            Waiter::Waker(waker) => waker.wake(),
            Waiter::Collector(collector, key) => collector.notify(key),
            Waiter::Callback(callback) => callbacks.push(callback),
        }
    }
    for callback in callbacks {
        run_callback(callback, fut);
    }
}

/// Runs one done-callback, catching and logging a panic so the others still run.
pub(crate) fn run_callback<T>(callback: Callback<T>, fut: &Future<T>) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| callback(fut))) {
        log::error!(
            target: "concurrent_futures",
            "done callback panicked: {}",
            crate::error::panic_message(&*payload)
        );
    }
}

/// The type-erased face of a task that a [`Future`] holds.
pub(crate) trait Handle<T>: Send + Sync {
    fn core(&self) -> &Core<T>;

    /// Claims and runs the task if it is still pending, counting it in `counters`. A
    /// `worker` run also marks its thread idle before publishing the result, so that the
    /// caller's next submit finds it idle rather than starting a thread.
    fn run(&self, fut: &Future<T>, counters: Option<&Counters>, worker: bool) -> Ran;

    /// Cancels the task if it is still pending, dropping its closure.
    fn cancel(&self, fut: &Future<T>) -> bool;
}

/// What became of a request to run a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Ran {
    /// This call ran it.
    Here,
    /// It was cancelled (or failed) before it could start.
    Cancelled,
    /// Someone else claimed it first (a worker, or an inline run).
    Elsewhere,
}

/// A task with its closure, as queued in an executor: one allocation per task.
pub(crate) struct Task<T, F> {
    core: Core<T>,
    /// Taken by whoever moves the state out of PENDING (rule 4).
    func: Mutex<Option<F>>,
}

impl<T, F> Task<T, F>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    pub(crate) fn new(func: F, owner: u32) -> Arc<Self> {
        Arc::new(Task {
            core: Core::new(owner),
            func: Mutex::new(Some(func)),
        })
    }

    /// Takes the closure back if the task is still pending, cancelling it: the way a
    /// refused submit returns the closure to the caller after a shutdown race.
    pub(crate) fn reclaim(self: &Arc<Self>) -> Option<F> {
        let fut = Future::from_task(self.clone());
        let mut func = None;
        self.core.cancel(&fut, || func = self.func.lock().take());
        func
    }
}

impl<T, F> Handle<T> for Task<T, F>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    fn core(&self) -> &Core<T> {
        &self.core
    }

    fn run(&self, fut: &Future<T>, counters: Option<&Counters>, worker: bool) -> Ran {
        if !self.core.claim() {
            return match self.core.word() & STATE_MASK {
                CANCELLED => Ran::Cancelled,
                _ => Ran::Elsewhere,
            };
        }
        if let Some(c) = counters {
            c.started.fetch_add(1, Ordering::Relaxed);
        }
        let func = self
            .func
            .lock()
            .take()
            .expect("claimed task has its closure (rule 4)");
        let outcome = panic::catch_unwind(AssertUnwindSafe(func)).map_err(TaskError::from_panic);
        if let Some(c) = counters {
            c.completed.fetch_add(1, Ordering::Relaxed);
            if worker {
                c.surplus.fetch_add(1, Ordering::AcqRel); // idle again
            }
        }
        // Only this thread can finish a RUNNING task, so this cannot fail.
        let _ = self.core.finish(outcome, fut);
        Ran::Here
    }

    fn cancel(&self, fut: &Future<T>) -> bool {
        self.core.cancel(fut, || drop(self.func.lock().take()))
    }
}

/// What a queue holds: a task with its result type erased.
pub(crate) trait Runnable: Send + Sync {
    /// Claims and runs the task on a worker, counting it in `counters`. After `Ran::Here`
    /// the worker is already counted idle again in `counters.surplus`.
    fn run(self: Arc<Self>, counters: &Counters) -> Ran;
    /// Cancels the task if it is still pending.
    fn cancel(self: Arc<Self>) -> bool;
    /// Finishes a still-pending task with `err` (a broken executor); false if not pending.
    fn fail(self: Arc<Self>, err: TaskError) -> bool;
}

impl<T, F> Runnable for Task<T, F>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    fn run(self: Arc<Self>, counters: &Counters) -> Ran {
        let fut = Future::from_task(self.clone());
        Handle::run(&*self, &fut, Some(counters), true)
    }

    fn cancel(self: Arc<Self>) -> bool {
        let fut = Future::from_task(self.clone());
        Handle::cancel(&*self, &fut)
    }

    fn fail(self: Arc<Self>, err: TaskError) -> bool {
        if !self.core.claim() {
            return false;
        }
        drop(self.func.lock().take()); // rule 4
        let fut = Future::from_task(self.clone());
        self.core.finish(Err(err), &fut).is_ok()
    }
}

/// Counters of an executor's tasks, updated by its workers and by inline runs.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) submitted: CachePadded<AtomicUsize>,
    pub(crate) started: CachePadded<AtomicUsize>,
    pub(crate) completed: CachePadded<AtomicUsize>,
    /// Cancelled or failed tasks that left the queue without running.
    pub(crate) discarded: CachePadded<AtomicUsize>,
    /// Idle workers minus queued tasks (see `thread`'s module docs).
    pub(crate) surplus: CachePadded<AtomicIsize>,
}

thread_local! {
    /// The pool this thread is a worker of, and its counters; `None` on other threads.
    static WORKER_OF: RefCell<Option<(u32, std::sync::Arc<Counters>)>> = const { RefCell::new(None) };
}

/// Marks the current thread as a worker of pool `id` until dropped.
#[derive(Debug)]
pub(crate) struct WorkerGuard(());

impl WorkerGuard {
    pub(crate) fn enter(id: u32, counters: std::sync::Arc<Counters>) -> WorkerGuard {
        WORKER_OF.with(|w| *w.borrow_mut() = Some((id, counters)));
        WorkerGuard(())
    }
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        WORKER_OF.with(|w| w.borrow_mut().take());
    }
}

/// Returns `true` on a worker thread of pool `id`.
pub(crate) fn is_worker_of(id: u32) -> bool {
    WORKER_OF.with(|w| matches!(&*w.borrow(), Some((me, _)) if *me == id))
}

/// If the current thread is a worker of the pool that owns the task, runs it inline while it
/// is still pending, so that a worker waiting on its own pool's queued task cannot deadlock
/// the pool. True if it ran here.
pub(crate) fn help<T>(handle: &dyn Handle<T>, fut: &Future<T>) -> bool {
    let owner = handle.core().owner();
    if owner == 0 || !handle.core().claim_peek() {
        return false;
    }
    WORKER_OF.with(|w| match &*w.borrow() {
        Some((id, counters)) if *id == owner => handle.run(fut, Some(counters), false) == Ran::Here,
        _ => false,
    })
}
