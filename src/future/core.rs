//! The task cell behind every [`Future`]: state word, closure or result, waiter list.
//!
//! One allocation per task: [`Task`] holds the closure until it runs, then its outcome, in
//! one `Stage`, next to the list of waiters.
//!
//! # State machine
//!
//! ```text
//! PENDING --claim----> RUNNING --finish--> FINISHED   (value, or error with the FAILED bit)
//! PENDING --finish---> FINISHED                       (promises and broken executors only)
//! PENDING --cancel---> CANCELLED
//! ```
//!
//! Every transition is one compare-and-swap on the state word, so the common path of a pool
//! task (claim, run, finish, take) takes no lock. Two more bits ride in the word: `SETTING`
//! marks the one thread allowed to write the outcome, and `WAITERS` says that the waiter list,
//! kept under a mutex, is not empty. Rules the code cites:
//!
//! 1. The word is the truth. A transition out of PENDING is won by exactly one thread (the
//!    claimer, a canceller or a finisher); only that thread touches the job in `stage`.
//! 2. The outcome is written only by the holder of `SETTING` (set with the claim of a pool
//!    task, or by `finish` on a promise), and the write happens before the Release that
//!    publishes FINISHED; readers load the word with Acquire before reading the stage.
//! 3. FINISHED and CANCELLED are final. A waiter is queued only under the list's lock and
//!    after setting `WAITERS` with a read-modify-write that returns a state not yet final; a
//!    transition into a final state with `WAITERS` set is made under the same lock and takes
//!    the whole list. So a waiter is either queued before the final transition and taken by
//!    it, or told the future is done and never queued: each waiter is notified exactly once.
//! 4. Waiters are notified after the lock is released: first the wake-ups (parked threads,
//!    wakers, collectors), then the callbacks in the order they were added. A panicking
//!    callback is caught and logged; the next one still runs.
//! 5. The value is moved out once, by whoever sets `TAKEN` first (the owner of the
//!    [`Future`], or a [`SharedFuture`](super::SharedFuture)'s cell); an error stays in place
//!    and is only ever read, so `exception()` keeps working.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use crossbeam_utils::CachePadded;

use super::collector::Collector;
use super::{Future, State};
use crate::error::TaskError;
use crate::sync::{self, AtomicU32, AtomicUsize, Mutex, Thread, UnsafeCell};

pub(crate) const PENDING: u32 = 0;
pub(crate) const RUNNING: u32 = 1;
pub(crate) const FINISHED: u32 = 2;
pub(crate) const CANCELLED: u32 = 3;
const STATE_MASK: u32 = 0b11;
/// Set with FINISHED when the future holds an error (not for CANCELLED, as in Python's
/// `FIRST_EXCEPTION`).
pub(crate) const FAILED: u32 = 0b100;
/// The waiter list may hold waiters: a final transition must take it under its lock (rule 3).
const WAITERS: u32 = 0b1000;
/// One thread owns the outcome and is writing it (rule 2). Seen as RUNNING from outside.
const SETTING: u32 = 0b1_0000;
/// The value was moved out (rule 5).
const TAKEN: u32 = 0b10_0000;
/// The bits that [`Handle::word`] shows: the state and `FAILED`.
const VISIBLE: u32 = STATE_MASK | FAILED;

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

/// A task: one allocation holding the closure, then the outcome, and the waiters.
pub(crate) struct Task<T, F> {
    /// State bits (`PENDING`..`CANCELLED`, `FAILED`, `WAITERS`, `SETTING`, `TAKEN`): the
    /// truth about the task (rule 1).
    state: AtomicU32,
    /// The pool that runs the task, 0 for none: a worker of that pool waiting on the task
    /// while it is still queued runs it inline instead of deadlocking.
    owner: u32,
    /// The job, then the outcome. Who may touch it is decided by `state` (rules 1, 2, 5).
    stage: UnsafeCell<Stage<T, F>>,
    /// Who to tell when the task is done; locked only to queue, remove or take waiters.
    waiters: Mutex<Waiters<T>>,
}

// SAFETY: `Task` is `!Sync` only for its `UnsafeCell`. Threads sharing a `&Task` reach the
// stage only as the state word allows (rules 1, 2 and 5): the job and the value are moved
// between threads, never shared, so they need `Send` alone; the error (`TaskError`, which is
// `Send + Sync`) is the one thing read by several threads at once.
#[allow(unsafe_code)]
unsafe impl<T: Send, F: Send> Sync for Task<T, F> {}

enum Stage<T, F> {
    Pending(F),
    /// Claimed, or cancelled (the job left), or the value taken.
    Empty,
    Value(T),
    /// Boxed: errors are rare, and a small stage keeps every task small.
    Error(Box<TaskError>),
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
            stage: UnsafeCell::new(Stage::Pending(job)),
            waiters: Mutex::new(Waiters::NONE),
        })
    }

    /// Moves the job out of the stage, leaving it empty.
    ///
    /// Only the thread that took the task out of PENDING may call this, once (rule 1).
    #[allow(unsafe_code)]
    fn take_job(&self) -> Option<F> {
        // SAFETY: the caller won the only transition out of PENDING (a compare-and-swap on
        // the state word), so no other thread touches the stage now: a claimer or canceller
        // would have to win the same transition, a finisher needs `SETTING` (which only this
        // winner can have set), and readers wait for a final state that the job never
        // shares with (a cancelled task's stage is never read; a finished one's job is
        // replaced by the outcome before FINISHED is published).
        self.stage.with_mut(
            |stage| match unsafe { std::mem::replace(&mut *stage, Stage::Empty) } {
                Stage::Pending(job) => Some(job),
                _ => None,
            },
        )
    }

    /// PENDING -> RUNNING, handing out the job (rule 1). With `setting`, the caller also
    /// becomes the only writer of the outcome (rule 2). `None` if not pending.
    fn claim(&self, setting: bool) -> Option<Option<F>> {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if cur & STATE_MASK != PENDING {
                return None;
            }
            let next = (cur & WAITERS) | RUNNING | if setting { SETTING } else { 0 };
            // ORDERING: Acquire, to see the job written before the task was shared; the
            // word's other writers release.
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(if F::RUNNABLE { self.take_job() } else { None }),
                Err(now) => cur = now,
            }
        }
    }

    /// PENDING -> CANCELLED; the job comes back to be dropped outside any lock, or `None`
    /// if the task was not pending. `already` reports a task that was cancelled before.
    fn cancel_take(&self, fut: &Future<T>) -> Result<Option<F>, bool> {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            match cur & STATE_MASK {
                PENDING => {}
                CANCELLED => return Err(true),
                _ => return Err(false),
            }
            match self.settle(cur, CANCELLED) {
                Ok(waiters) => {
                    let job = self.take_job();
                    notify(waiters, fut);
                    return Ok(job);
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Moves the word from `cur` to the final state `to` (rule 3): one compare-and-swap if
    /// nobody waits, else the same under the waiter list's lock, taking the list. Gives back
    /// the word found if it was not `cur`.
    fn settle(&self, cur: u32, to: u32) -> Result<Waiters<T>, u32> {
        // ORDERING: Release publishes the outcome written before (rule 2); Acquire on
        // failure, as the caller reads the stage according to what it finds.
        if cur & WAITERS == 0 {
            return self
                .state
                .compare_exchange(cur, to, Ordering::AcqRel, Ordering::Acquire)
                .map(|_| Waiters::NONE);
        }
        let mut waiters = self.waiters.lock();
        // Under the lock nobody sets WAITERS; only a transition out of PENDING can race.
        self.state
            .compare_exchange(cur, to | WAITERS, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| std::mem::replace(&mut *waiters, Waiters::NONE))
    }

    /// Writes the outcome and publishes FINISHED. The caller holds `SETTING` (rule 2).
    #[allow(unsafe_code)]
    fn complete(&self, outcome: Result<T, TaskError>, fut: &Future<T>) {
        let (stage, word) = match outcome {
            Ok(value) => (Stage::Value(value), FINISHED),
            Err(err) => (Stage::Error(Box::new(err)), FINISHED | FAILED),
        };
        // SAFETY: the caller holds `SETTING`, which one thread at a time can hold and which
        // is cleared only by the release below; nobody else writes the stage meanwhile, and
        // readers read it only after seeing a final state, which is published after this
        // write (rule 2). The stage holds no job here (the claim took it; a promise has
        // only its empty marker to drop).
        self.stage.with_mut(|cell| unsafe { *cell = stage });
        let mut cur = self.state.load(Ordering::Relaxed);
        let waiters = loop {
            match self.settle(cur, word) {
                Ok(waiters) => break waiters,
                // Only WAITERS can have changed (a waiter queued meanwhile).
                Err(now) => cur = now,
            }
        };
        notify(waiters, fut);
    }

    /// Takes the closure back if the task is still pending, cancelling it: the way a
    /// refused submit returns the closure to the caller after a shutdown race.
    pub(crate) fn reclaim(self: &Arc<Self>) -> Option<F> {
        let fut = Future::from_task(self.clone());
        self.cancel_take(&fut).ok().flatten()
    }

    /// Queues `waiter`, first marking the list as used (rule 3); hands it back if the task
    /// is done.
    fn queue(&self, waiters: &mut Waiters<T>, waiter: Waiter<T>) -> Result<(), Waiter<T>> {
        // ORDERING: AcqRel; this read-modify-write is ordered with every final transition,
        // so it either precedes it (and the waiter is taken) or sees it.
        if is_done(self.state.fetch_or(WAITERS, Ordering::AcqRel)) {
            return Err(waiter);
        }
        waiters.push(waiter);
        Ok(())
    }
}

/// The type-erased face of a task that a [`Future`] holds.
pub(crate) trait Handle<T>: Send + Sync {
    /// The state and `FAILED` bits of the state word (rule 1).
    fn word(&self) -> u32;
    fn owner(&self) -> u32;
    /// Queues `waiter` unless the future is done, in which case it is handed back (rule 3).
    fn add_waiter(&self, waiter: Waiter<T>) -> Result<(), Waiter<T>>;
    /// Registers or refreshes the owner's waker. False if the future is done.
    fn register_waker(&self, waker: &Waker) -> bool;
    /// Removes the waiters `remove` picks (a timed-out thread, a finished collector).
    fn remove_waiters(&self, remove: &dyn Fn(&Waiter<T>) -> bool);
    /// Moves the outcome out (rule 5). The future must be done.
    ///
    /// # Panics
    ///
    /// If the future is not done, or its value was taken before.
    fn take(&self) -> Result<T, TaskError>;
    /// The error of a done future, if it has one. `None` while not done.
    fn error(&self) -> Option<TaskError>;
    /// PENDING -> CANCELLED, dropping the job. True if cancelled now or before.
    fn cancel(&self, fut: &Future<T>) -> bool;
    /// PENDING -> RUNNING without a job (a promise). False if not pending.
    fn set_running(&self) -> bool;
    /// PENDING or RUNNING -> FINISHED with `outcome`, then notifies (rules 2 to 4).
    /// Gives the outcome back if the future was already done. Not for a pool task that is
    /// running: only its runner finishes that.
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
}

/// Where a task runs: the worker's counters, and how it marks itself idle.
pub(crate) struct RunCtx<'a> {
    pub(crate) counters: &'a WorkerCounters,
    pub(crate) mark_idle: Option<&'a dyn Fn()>,
}

impl<T: Send + 'static, F: Job<T>> Handle<T> for Task<T, F> {
    #[inline]
    fn word(&self) -> u32 {
        // ORDERING: Acquire pairs with the Release of every transition, so a reader that
        // sees a final state also sees the outcome written before it (rule 2).
        self.state.load(Ordering::Acquire) & VISIBLE
    }

    fn owner(&self) -> u32 {
        self.owner
    }

    fn add_waiter(&self, waiter: Waiter<T>) -> Result<(), Waiter<T>> {
        let mut waiters = self.waiters.lock();
        self.queue(&mut waiters, waiter)
    }

    fn register_waker(&self, waker: &Waker) -> bool {
        let mut waiters = self.waiters.lock();
        if waiters.replace_waker(waker) {
            // Queued before, so not yet taken by a final transition: still pending.
            return true;
        }
        self.queue(&mut waiters, Waiter::Waker(waker.clone()))
            .is_ok()
    }

    fn remove_waiters(&self, remove: &dyn Fn(&Waiter<T>) -> bool) {
        self.waiters.lock().retain(|w| !remove(w));
    }

    #[allow(unsafe_code)]
    fn take(&self) -> Result<T, TaskError> {
        let word = self.word();
        match word & STATE_MASK {
            CANCELLED => return Err(TaskError::Cancelled),
            FINISHED => {}
            _ => panic!("take() on a future that is not done"),
        }
        if word & FAILED != 0 {
            return Err(self.error().expect("a FAILED task holds an error"));
        }
        // ORDERING: Acquire, to read the value published with FINISHED (rule 2).
        let before = self.state.fetch_or(TAKEN, Ordering::Acquire);
        assert!(before & TAKEN == 0, "the value of a future taken twice");
        // SAFETY: the task is FINISHED with a value, which nobody writes any more (rule 2),
        // and this thread is the one that set `TAKEN`, so the only one to move it (rule 5);
        // no one else reads a value stage (`error()` reads only a FAILED one).
        let stage = self
            .stage
            .with_mut(|stage| unsafe { std::mem::replace(&mut *stage, Stage::Empty) });
        match stage {
            Stage::Value(value) => Ok(value),
            _ => unreachable!("a FINISHED task without FAILED holds its value (rule 2)"),
        }
    }

    #[allow(unsafe_code)]
    fn error(&self) -> Option<TaskError> {
        let word = self.word();
        match word & STATE_MASK {
            CANCELLED => Some(TaskError::Cancelled),
            // SAFETY: a FAILED task's stage holds its error, written before FINISHED was
            // published (seen with Acquire) and never written again: shared reads only.
            FINISHED if word & FAILED != 0 => self.stage.with(|stage| match unsafe { &*stage } {
                Stage::Error(err) => Some((**err).clone()),
                _ => unreachable!("a FAILED task holds an error (rule 2)"),
            }),
            _ => None,
        }
    }

    fn cancel(&self, fut: &Future<T>) -> bool {
        match self.cancel_take(fut) {
            Ok(job) => {
                drop(job); // outside any lock: it may run arbitrary drops
                true
            }
            Err(already) => already,
        }
    }

    fn set_running(&self) -> bool {
        self.claim(false).is_some()
    }

    fn finish(
        &self,
        outcome: Result<T, TaskError>,
        fut: &Future<T>,
    ) -> Result<(), Result<T, TaskError>> {
        let backoff = crossbeam_utils::Backoff::new();
        let mut cur = self.state.load(Ordering::Acquire);
        let job = loop {
            let (next, from_pending) = match cur & STATE_MASK {
                PENDING => ((cur & WAITERS) | RUNNING | SETTING, true),
                RUNNING if cur & SETTING == 0 => (cur | SETTING, false),
                // Another finisher of a promise is writing (a few instructions away from
                // publishing): the outcome is decided, wait to report it truthfully.
                RUNNING => {
                    sync::snooze(&backoff);
                    cur = self.state.load(Ordering::Acquire);
                    continue;
                }
                _ => return Err(outcome),
            };
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break if from_pending { self.take_job() } else { None },
                Err(now) => cur = now,
            }
        };
        self.complete(outcome, fut);
        drop(job); // a pending job failed by a broken executor
        Ok(())
    }

    fn run(&self, fut: &Future<T>, ctx: Option<&RunCtx<'_>>) -> bool {
        if !F::RUNNABLE {
            return false;
        }
        let Some(Some(job)) = self.claim(true) else {
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
        // The claim made this thread the outcome's only writer (rule 2).
        self.complete(outcome, fut);
        true
    }
}

/// Blocks until the future is done or `deadline` passes; true if done.
pub(crate) fn block_until<T>(task: &dyn Handle<T>, deadline: Option<Instant>) -> bool {
    if is_done(task.word()) {
        return true;
    }
    // Spin and yield briefly first: a result that is microseconds away is cheaper to catch
    // awake than to be woken for (waking a parked thread can cost tens of microseconds on a
    // virtual machine). Loom has no use for spinning.
    #[cfg(not(concurrent_futures_loom))]
    {
        let backoff = crossbeam_utils::Backoff::new();
        while !backoff.is_completed() {
            backoff.snooze();
            if is_done(task.word()) {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
        }
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

/// Where a thread sends the done-callbacks of the futures it completes, instead of running
/// them itself.
pub(crate) type CallbackSink = Arc<dyn Fn(Box<dyn FnOnce() + Send>) + Send + Sync>;

thread_local! {
    static DEFER_CALLBACKS: RefCell<Option<CallbackSink>> = const { RefCell::new(None) };
}

/// From now on, the callbacks of futures that this thread completes run wherever `sink`
/// sends them (in order, all of one future's together). For threads that must never run
/// user code that could wait on them: a process pool's managers.
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
pub(crate) fn defer_callbacks(sink: CallbackSink) {
    DEFER_CALLBACKS.with(|d| *d.borrow_mut() = Some(sink));
}

/// Tells every waiter, wake-ups first, then callbacks in order (rule 4).
fn notify<T: Send + 'static>(waiters: Waiters<T>, fut: &Future<T>) {
    if waiters.0.is_none() {
        return;
    }
    let mut callbacks = Vec::new();
    for waiter in waiters.into_vec() {
        match waiter {
            Waiter::Thread(thread) => thread.unpark(),
            Waiter::Waker(waker) => waker.wake(),
            Waiter::Collector(collector, key) => collector.notify(key),
            Waiter::Callback(callback) => callbacks.push(callback),
        }
    }
    if callbacks.is_empty() {
        return;
    }
    let sink = DEFER_CALLBACKS
        .try_with(|d| d.borrow().clone())
        .ok()
        .flatten();
    if let Some(sink) = sink {
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
        // Only from PENDING: a running pool task is finished by its runner alone (rule 2).
        let Some(job) = self.claim(true) else {
            return false;
        };
        let fut = Future::from_task(self.clone());
        self.complete(Err(err), &fut);
        drop(job);
        true
    }
}

/// One worker's task counts, on its own cache line: only that thread writes them.
#[derive(Debug, Default)]
pub(crate) struct WorkerCounters {
    pub(crate) started: CachePadded<AtomicUsize>,
    pub(crate) completed: CachePadded<AtomicUsize>,
}

impl WorkerCounters {
    /// Adds one. Only the worker that owns these counters writes them, so a plain store
    /// suffices (no locked read-modify-write); readers may see the old value a moment longer.
    #[inline]
    pub(crate) fn bump(&self, counter: &AtomicUsize) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Release);
    }
}

thread_local! {
    /// The pool this thread is a worker of, and its counters; `None` on other threads.
    static WORKER_OF: RefCell<Option<(u32, Arc<WorkerCounters>)>> = const { RefCell::new(None) };
}

/// Marks the current thread as a worker of pool `id` until dropped.
#[derive(Debug)]
pub(crate) struct WorkerGuard(());

impl WorkerGuard {
    pub(crate) fn enter(id: u32, counters: Arc<WorkerCounters>) -> WorkerGuard {
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
pub(crate) fn help<T>(task: &dyn Handle<T>, fut: &Future<T>) -> bool {
    let owner = task.owner();
    if owner == 0 || task.word() != PENDING {
        return false;
    }
    let counters = WORKER_OF.with(|w| match &*w.borrow() {
        Some((id, counters)) if *id == owner => Some(counters.clone()),
        _ => None,
    });
    let Some(counters) = counters else {
        return false;
    };
    let ctx = RunCtx {
        counters: &counters,
        mark_idle: None, // this thread is busy with the task that waits
    };
    task.run(fut, Some(&ctx))
}
