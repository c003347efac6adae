//! The task cell behind every [`Future`]: state word, closure or result, waiter list.
//!
//! One allocation per task: [`Task`] holds the closure until it runs, then its outcome, in
//! one `Stage` under one mutex, next to the list of waiters.
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
//! 4. The closure leaves `Stage::Pending` only with the transition out of PENDING: the claimer
//!    takes it to run it, the canceller or failer drops it (outside the lock).
//! 5. The value is moved out only by the single owner of the [`Future`] (`result(self)`) or
//!    once into a [`SharedFuture`](super::SharedFuture)'s cell; errors stay in place so that
//!    `exception()` keeps working.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Waker;
use std::time::Instant;

use super::collector::Collector;
use super::{Future, State};
use crate::context::{self, RunCtx};
use crate::error::TaskError;
use crate::sync::{self, AtomicU32, Mutex, Spun, Thread};

pub(crate) const PENDING: u32 = 0;
pub(crate) const RUNNING: u32 = 1;
pub(crate) const FINISHED: u32 = 2;
pub(crate) const CANCELLED: u32 = 3;
const STATE_MASK: u32 = 0b11;
/// Set with FINISHED when the future holds an error (not for CANCELLED, as in Python's
/// `FIRST_EXCEPTION`).
const FAILED: u32 = 0b100;

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

/// Done with an error (never true of a pending or cancelled task).
pub(crate) fn failed(word: u32) -> bool {
    word & FAILED != 0
}

/// What a task runs. Closures are jobs; a [`Promised`] task has none and is completed by hand.
pub(crate) trait Job<T>: Send + 'static {
    /// False for promises: nothing to run.
    const RUNNABLE: bool = true;
    fn call(self) -> T;
}

impl<T, F: FnOnce() -> T + Send + 'static> Job<T> for F {
    fn call(self) -> T {
        self()
    }
}

/// `f(arg)` as a job: unlike a closure, a refused one can give back its function and argument.
#[derive(Debug)]
pub(crate) struct Call<F, A> {
    pub(crate) f: F,
    pub(crate) arg: A,
}

impl<F, A, R> Job<R> for Call<F, A>
where
    F: FnOnce(A) -> R + Send + 'static,
    A: Send + 'static,
    R: 'static,
{
    fn call(self) -> R {
        (self.f)(self.arg)
    }
}

/// The job of a [`Promise`](super::Promise): there is none.
#[derive(Debug)]
pub(crate) struct Promised;

impl<T> Job<T> for Promised {
    const RUNNABLE: bool = false;
    fn call(self) -> T {
        unreachable!("a promise is completed by its owner, never run")
    }
}

/// What [`Task::claim`] did: the transition PENDING -> RUNNING.
enum ToRunning<F> {
    /// Claimed now: the job to run, which only the claimer holds (rule 4).
    Claimed(F),
    /// Not pending (running, finished or cancelled): nothing to run.
    NotPending,
}

/// What [`Task::cancel_take`] did: the transition PENDING -> CANCELLED.
enum ToCancelled<F> {
    /// Cancelled now, with the job if the task had one, to drop outside the lock (rule 4).
    Now(Option<F>),
    /// It was cancelled before.
    Already,
    /// Running or finished: it will complete.
    TooLate,
}

/// A task: one allocation holding the closure, then the outcome, and the waiters.
pub(crate) struct Task<T, F> {
    /// State bits (`PENDING`..`CANCELLED`, plus `FAILED`), mirrored from `inner` (rule 1).
    state: AtomicU32,
    /// The pool that runs the task, 0 for none: a worker of that pool waiting on the task
    /// while it is still queued runs it inline instead of deadlocking.
    owner: u32,
    inner: Mutex<Inner<T, F>>,
}

struct Inner<T, F> {
    stage: Stage<T, F>,
    waiters: Waiters<T>,
}

enum Stage<T, F> {
    Pending(F),
    Running,
    Value(T),
    /// Boxed: errors are rare, and a small stage keeps every task small.
    Error(Box<TaskError>),
    Cancelled,
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

/// The waiters, newest first, as a singly linked list: one pointer in every task, and an
/// allocation only for a task that somebody actually waits on.
struct Waiters<T>(Option<Box<Node<T>>>);

struct Node<T> {
    waiter: Waiter<T>,
    next: Waiters<T>,
}

impl<T> Waiters<T> {
    const NONE: Waiters<T> = Waiters(None);

    fn push(&mut self, waiter: Waiter<T>) {
        let next = std::mem::replace(self, Waiters::NONE);
        self.0 = Some(Box::new(Node { waiter, next }));
    }

    /// Oldest first.
    fn into_vec(mut self) -> Vec<Waiter<T>> {
        let mut all = Vec::new();
        while let Some(node) = self.0.take() {
            let Node { waiter, next } = *node;
            all.push(waiter);
            self = next;
        }
        all.reverse();
        all
    }

    fn retain(&mut self, mut keep: impl FnMut(&Waiter<T>) -> bool) {
        let all = std::mem::replace(self, Waiters::NONE).into_vec();
        for waiter in all.into_iter().filter(|w| keep(w)) {
            self.push(waiter);
        }
    }

    /// Refreshes the owner's waker if one is registered; false if none is.
    fn replace_waker(&mut self, waker: &Waker) -> bool {
        let mut node = &mut self.0;
        while let Some(n) = node {
            if let Waiter::Waker(old) = &mut n.waiter {
                if !old.will_wake(waker) {
                    old.clone_from(waker);
                }
                return true;
            }
            node = &mut n.next.0;
        }
        false
    }
}

impl<T: Send + 'static, F: Job<T>> Task<T, F> {
    pub(crate) fn new(job: F, owner: u32) -> Arc<Self> {
        Arc::new(Task {
            state: AtomicU32::new(PENDING),
            owner,
            inner: Mutex::new(Inner {
                stage: Stage::Pending(job),
                waiters: Waiters::NONE,
            }),
        })
    }

    /// PENDING -> RUNNING, handing out the job (rule 4).
    fn claim(&self) -> ToRunning<F> {
        let mut inner = self.inner.lock();
        if self.word() != PENDING {
            return ToRunning::NotPending;
        }
        let Stage::Pending(job) = std::mem::replace(&mut inner.stage, Stage::Running) else {
            unreachable!("a PENDING task holds its job (rule 4)")
        };
        self.state.store(RUNNING, Ordering::Release); // rule 1
        ToRunning::Claimed(job)
    }

    /// PENDING -> CANCELLED, notifying the waiters; the job comes back to be dropped
    /// outside the lock.
    fn cancel_take(&self, fut: &Future<T>) -> ToCancelled<F> {
        let mut inner = self.inner.lock();
        match self.word() & STATE_MASK {
            PENDING => {}
            CANCELLED => return ToCancelled::Already,
            _ => return ToCancelled::TooLate,
        }
        let job = match std::mem::replace(&mut inner.stage, Stage::Cancelled) {
            Stage::Pending(job) => Some(job),
            _ => None,
        };
        self.state.store(CANCELLED, Ordering::Release);
        let waiters = std::mem::replace(&mut inner.waiters, Waiters::NONE);
        drop(inner);
        notify(waiters, fut);
        ToCancelled::Now(job)
    }

    /// Takes the closure back if the task is still pending, cancelling it: the way a
    /// refused submit returns the closure to the caller after a shutdown race.
    pub(crate) fn reclaim(self: &Arc<Self>) -> Option<F> {
        let fut = Future::from_task(self.clone());
        match self.cancel_take(&fut) {
            ToCancelled::Now(job) => job,
            ToCancelled::Already | ToCancelled::TooLate => None,
        }
    }
}

/// The type-erased face of a task that a [`Future`] holds.
pub(crate) trait Handle<T>: Send + Sync {
    /// The state word (rule 1).
    fn word(&self) -> u32;
    fn owner(&self) -> u32;
    /// Queues `waiter` unless the future is done, in which case it is handed back (rule 2).
    fn add_waiter(&self, waiter: Waiter<T>) -> Result<(), Waiter<T>>;
    /// Registers or refreshes the owner's waker. False if the future is done.
    fn register_waker(&self, waker: &Waker) -> bool;
    /// Removes the waiters `remove` picks (a timed-out thread, a finished collector).
    fn remove_waiters(&self, remove: &dyn Fn(&Waiter<T>) -> bool);
    /// Moves the outcome out (rule 5). The future must be done.
    fn take(&self) -> Result<T, TaskError>;
    /// The error of a done future, if it has one. `None` while not done.
    fn error(&self) -> Option<TaskError>;
    /// PENDING -> CANCELLED, dropping the job. True if cancelled now or before.
    fn cancel(&self, fut: &Future<T>) -> bool;
    /// PENDING -> RUNNING without a job (a promise). False if not pending.
    fn set_running(&self) -> bool;
    /// PENDING or RUNNING -> FINISHED with `outcome`, then notifies (rules 2 and 3).
    /// Gives the outcome back if the future was already done.
    fn finish(
        &self,
        outcome: Result<T, TaskError>,
        fut: &Future<T>,
    ) -> Result<(), Result<T, TaskError>>;
    /// Claims and runs the task if it is still pending; true if this call ran it (false if
    /// it was cancelled, failed, or claimed elsewhere first). `ctx` counts it; a worker's
    /// `mark_idle` runs before the result is published, so that the caller's next submit
    /// finds the worker idle rather than starting a thread.
    fn run(&self, fut: &Future<T>, ctx: Option<&RunCtx<'_>>) -> bool;
    /// The id of a task that has one (a Redis task, as a checked `TaskId`'s text); `None`
    /// for local tasks. Kept as text so that the cell knows nothing of Redis.
    #[cfg(feature = "redis")]
    fn task_id(&self) -> Option<std::sync::Arc<str>> {
        None
    }
}

impl<T: Send + 'static, F: Job<T>> Handle<T> for Task<T, F> {
    #[inline]
    fn word(&self) -> u32 {
        // ORDERING: Acquire pairs with the Release stores made under the lock, so a reader
        // that sees a final state agrees with what the lock-holder wrote (rule 1).
        self.state.load(Ordering::Acquire)
    }

    fn owner(&self) -> u32 {
        self.owner
    }

    fn add_waiter(&self, waiter: Waiter<T>) -> Result<(), Waiter<T>> {
        let mut inner = self.inner.lock();
        if is_done(self.word()) {
            return Err(waiter);
        }
        inner.waiters.push(waiter);
        Ok(())
    }

    fn register_waker(&self, waker: &Waker) -> bool {
        let mut inner = self.inner.lock();
        if is_done(self.word()) {
            return false;
        }
        if !inner.waiters.replace_waker(waker) {
            inner.waiters.push(Waiter::Waker(waker.clone()));
        }
        true
    }

    fn remove_waiters(&self, remove: &dyn Fn(&Waiter<T>) -> bool) {
        self.inner.lock().waiters.retain(|w| !remove(w));
    }

    fn take(&self) -> Result<T, TaskError> {
        let mut inner = self.inner.lock();
        match std::mem::replace(&mut inner.stage, Stage::Taken) {
            Stage::Value(value) => Ok(value),
            Stage::Error(err) => {
                let out = (*err).clone();
                inner.stage = Stage::Error(err);
                Err(out)
            }
            Stage::Cancelled => {
                inner.stage = Stage::Cancelled;
                Err(TaskError::Cancelled)
            }
            // Polled to completion by reference (`block_on(&mut fut)`, a `select!` arm): the
            // value went to that poll. A misuse, told as a typed error rather than a panic.
            Stage::Taken => Err(TaskError::Taken),
            _ => unreachable!("take() on a future that is not done (rule 5)"),
        }
    }

    fn error(&self) -> Option<TaskError> {
        match &self.inner.lock().stage {
            Stage::Error(err) => Some((**err).clone()),
            Stage::Cancelled => Some(TaskError::Cancelled),
            _ => None,
        }
    }

    fn cancel(&self, fut: &Future<T>) -> bool {
        match self.cancel_take(fut) {
            ToCancelled::Now(job) => {
                drop(job); // rule 4, outside the lock: it may run arbitrary drops
                true
            }
            ToCancelled::Already => true,
            ToCancelled::TooLate => false,
        }
    }

    fn set_running(&self) -> bool {
        // For promises the "job" is a marker; dropping it does nothing.
        matches!(self.claim(), ToRunning::Claimed(_))
    }

    fn finish(
        &self,
        outcome: Result<T, TaskError>,
        fut: &Future<T>,
    ) -> Result<(), Result<T, TaskError>> {
        let mut inner = self.inner.lock();
        if is_done(self.word()) {
            return Err(outcome);
        }
        let (stage, word) = match outcome {
            Ok(value) => (Stage::Value(value), FINISHED),
            Err(err) => (Stage::Error(Box::new(err)), FINISHED | FAILED),
        };
        let job = std::mem::replace(&mut inner.stage, stage);
        self.state.store(word, Ordering::Release);
        let waiters = std::mem::replace(&mut inner.waiters, Waiters::NONE);
        drop(inner);
        drop(job); // a pending job failed by a broken executor (rule 4)
        notify(waiters, fut);
        Ok(())
    }

    fn run(&self, fut: &Future<T>, ctx: Option<&RunCtx<'_>>) -> bool {
        if !F::RUNNABLE {
            return false;
        }
        let ToRunning::Claimed(job) = self.claim() else {
            return false;
        };
        if let Some(ctx) = ctx {
            ctx.counters.bump(&ctx.counters.started);
        }
        let outcome =
            panic::catch_unwind(AssertUnwindSafe(|| job.call())).map_err(TaskError::from_panic);
        if let Some(ctx) = ctx {
            ctx.counters.bump(&ctx.counters.completed);
            if let Some(mark_idle) = ctx.mark_idle {
                mark_idle();
            }
        }
        // Only this thread finishes a RUNNING task, unless its time limit passed first
        // (`Runnable::time_out`): then the outcome is dropped.
        let _ = self.finish(outcome, fut);
        true
    }
}

/// Blocks until the future is done or `deadline` passes; true if done.
pub(crate) fn block_until<T>(task: &dyn Handle<T>, deadline: Option<Instant>) -> bool {
    if is_done(task.word()) {
        return true;
    }
    // Spin and yield briefly first (see `spin_until`).
    match sync::spin_until(deadline, || is_done(task.word()).then_some(())) {
        Spun::Ready(()) => return true,
        Spun::TimedOut => return false,
        Spun::GaveUp => {}
    }
    let me = sync::current();
    if task.add_waiter(Waiter::Thread(me.clone())).is_err() {
        return true;
    }
    loop {
        // Spurious unparks (a stale token from an earlier wait) just loop.
        if is_done(task.word()) {
            return true;
        }
        match deadline {
            None => sync::park(),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    let id = me.id();
                    task.remove_waiters(&|w| matches!(w, Waiter::Thread(t) if t.id() == id));
                    return is_done(task.word());
                }
                sync::park_timeout(deadline - now);
            }
        }
    }
}

/// Tells every waiter, wake-ups first, then callbacks in order (rule 3).
fn notify<T: Send + 'static>(waiters: Waiters<T>, fut: &Future<T>) {
    let Some(node) = waiters.0 else {
        return;
    };
    let mut callbacks = Vec::new();
    let mut wake = |waiter| match waiter {
        Waiter::Thread(thread) => thread.unpark(),
        Waiter::Waker(waker) => waker.wake(),
        Waiter::Collector(collector, key) => collector.notify(key),
        Waiter::Callback(callback) => callbacks.push(callback),
    };
    if node.next.0.is_none() {
        // The usual case, one waiter: no list to turn into a vector.
        wake(node.waiter);
    } else {
        Waiters(Some(node)).into_vec().into_iter().for_each(wake);
    }
    if callbacks.is_empty() {
        return;
    }
    if let Some(sink) = context::callback_sink() {
        let fut = Future {
            task: fut.task.clone(),
        };
        sink(Box::new(move || {
            for callback in callbacks {
                run_callback(callback, &fut);
            }
        }));
        return;
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

/// What a queue holds: a task with its result type erased.
pub(crate) trait Runnable: Send + Sync {
    /// Claims and runs the task on a worker; true if it ran here, in which case the worker
    /// has already marked itself idle (see [`Handle::run`]).
    fn run(self: Arc<Self>, ctx: &RunCtx<'_>) -> bool;
    /// Cancels the task if it is still pending.
    fn cancel(self: Arc<Self>) -> bool;
    /// Finishes a still-pending task with `err` (a broken executor); false if not pending.
    fn fail(self: Arc<Self>, err: TaskError) -> bool;
    /// RUNNING -> FINISHED with [`TaskError::TimedOut`]: its time limit passed while it runs.
    /// The closure runs on and its result is dropped. False if it is not running.
    fn time_out(self: Arc<Self>) -> bool;
    /// The task's own time limit, if it was submitted with one (a thread pool's `Limited`).
    fn time_limit(&self) -> Option<std::time::Duration> {
        None
    }
}

impl<T: Send + 'static, F: Job<T>> Runnable for Task<T, F> {
    fn run(self: Arc<Self>, ctx: &RunCtx<'_>) -> bool {
        let fut = Future::from_task(self);
        fut.task.run(&fut, Some(ctx))
    }

    fn cancel(self: Arc<Self>) -> bool {
        let fut = Future::from_task(self);
        fut.task.cancel(&fut)
    }

    fn fail(self: Arc<Self>, err: TaskError) -> bool {
        // Only from PENDING: a task that a worker claimed is finished by that worker, not
        // overwritten under it (a waiting worker may run a queued task inline while a broken
        // pool drains the queue; the loom model `run_vs_fail_vs_callback` covers it).
        let ToRunning::Claimed(job) = self.claim() else {
            return false;
        };
        drop(job);
        let fut = Future::from_task(self);
        fut.task.finish(Err(err), &fut).is_ok()
    }

    fn time_out(self: Arc<Self>) -> bool {
        if self.word() != RUNNING {
            return false;
        }
        // A worker finishing the task at the same moment may win: `finish` decides under
        // the lock, and the loser's outcome is dropped.
        let fut = Future::from_task(self);
        fut.task.finish(Err(TaskError::TimedOut), &fut).is_ok()
    }
}

/// If the current thread is a worker of the pool that owns the task, runs it inline while it
/// is still pending, so that a worker waiting on its own pool's queued task cannot deadlock
/// the pool. True if it ran here.
pub(crate) fn help<T>(task: &dyn Handle<T>, fut: &Future<T>) -> bool {
    let owner = task.owner();
    if owner == 0 || task.word() != PENDING {
        return false;
    }
    let Some(counters) = context::counters_if_worker_of(owner) else {
        return false;
    };
    let ctx = RunCtx {
        counters: &counters,
        mark_idle: None, // this thread is busy with the task that waits
    };
    task.run(fut, Some(&ctx))
}
