//! [`Scope`]: tasks that borrow from the caller's stack, as `std::thread::scope` and
//! `rayon::scope` allow, with the pool's [`Future`] API inside.
//!
//! # How borrowing is made sound
//!
//! A scoped task's closure lives `'scope`, but the pool's queue holds `'static` jobs, so the
//! closure's lifetime is erased (the one `unsafe` block, in [`Scope::submit`]). That is sound
//! because of one rule: **[`ThreadPoolExecutor::scope`] does not return, or unwind, before
//! every closure submitted through its scope has been run to completion or dropped.**
//!
//! Each closure travels inside a [`ScopedJob`] that counts itself in the scope's `pending`
//! count and takes itself out only in its `Drop`, *after* it has dropped the closure, whether
//! the closure ran (a worker, or a waiter helping inline), was cancelled, was failed by a
//! broken pool, or came back refused. `scope` waits for the count to reach zero after its
//! body returns or panics. Nothing a caller can do to the futures (drop them, `mem::forget`
//! them) bypasses the count: the count follows the closures, not the handles.

use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::{Shared, ThreadPoolExecutor};
use crate::error::SubmitError;
use crate::future::Future;
use crate::future::{Job, WeakFuture};

/// A closure of a scope, as [`Scope::submit`] hands it back when the pool refuses it.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{SubmitError, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new();
/// pool.shutdown();
/// let name = String::from("report");
/// pool.scope(|s| {
///     if let Err(SubmitError::Shutdown(task)) = s.submit(|| name.len()) {
///         assert_eq!(task(), 6); // the refused closure, boxed, still borrowing `name`
///     }
/// });
/// ```
pub type ScopedTask<'scope, T> = Box<dyn FnOnce() -> T + Send + 'scope>;

/// The `'static` form of a [`ScopedTask`], only ever held by a [`ScopedJob`].
type Erased<T> = Box<dyn FnOnce() -> T + Send + 'static>;

/// What the scope's body and its tasks share: how many closures are still alive, and the
/// futures of tasks that may still be queued (for a scope on a worker thread to run them).
#[derive(Default)]
struct Pending {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    alive: usize,
    /// Tasks that may still be queued, held weakly (a finished task's value is never kept
    /// here) and pruned of those no longer queued whenever the list doubles, so it stays
    /// proportional to what is in flight however many tasks the scope runs.
    unhelped: Vec<Box<dyn Help>>,
    /// The list's length after the last pruning.
    pruned: usize,
    /// The first panic raised by dropping a closure that never ran (a cancelled task's
    /// captures): `scope` raises it once every closure is gone.
    drop_panic: Option<Box<dyn std::any::Any + Send>>,
}

impl Pending {
    fn add(&self) {
        self.state.lock().alive += 1;
    }

    /// A closure is gone; `panic` is what dropping it raised, if anything.
    fn done(&self, panic: Option<Box<dyn std::any::Any + Send>>) {
        let mut state = self.state.lock();
        if let Some(panic) = panic {
            state.drop_panic.get_or_insert(panic);
        }
        state.alive -= 1;
        if state.alive == 0 {
            self.changed.notify_all();
        }
    }

    /// A task was queued: the waiting scope may want to run it.
    fn queued(&self, task: Box<dyn Help>) {
        let mut state = self.state.lock();
        if state.unhelped.len() >= 2 * state.pruned.max(32) {
            state.unhelped.retain(|t| t.queued());
            state.pruned = state.unhelped.len();
        }
        state.unhelped.push(task);
        self.changed.notify_all();
    }

    /// The panic a dropped closure raised, if one did.
    fn take_drop_panic(&self) -> Option<Box<dyn std::any::Any + Send>> {
        self.state.lock().drop_panic.take()
    }

    /// Waits until no closure is alive, running queued tasks inline if this thread is one
    /// of the pool's workers (also those that tasks add while it waits).
    fn wait_for_zero(&self) {
        let mut state = self.state.lock();
        while state.alive > 0 {
            let tasks = std::mem::take(&mut state.unhelped);
            state.pruned = 0;
            if tasks.is_empty() {
                self.changed.wait(&mut state);
                continue;
            }
            drop(state);
            for task in &tasks {
                task.help();
            }
            drop(tasks);
            state = self.state.lock();
        }
    }
}

/// A scoped closure on its way through the pool; counted in [`Pending`] until it is gone.
pub(crate) struct ScopedJob<T> {
    task: Option<Erased<T>>,
    pending: Arc<Pending>,
}

impl<T: 'static> Job<T> for ScopedJob<T> {
    fn call(mut self) -> T {
        let task = self.task.take().expect("a job runs once");
        task()
        // `self` drops here: the closure is gone, then the count goes down.
    }
}

impl<T> Drop for ScopedJob<T> {
    fn drop(&mut self) {
        // The closure, and everything it borrowed, first; only then may `scope` return. A
        // panic from a captured value's `Drop` must not skip the count, or `scope` would
        // wait for ever: it is caught here and raised by `scope` instead.
        let task = self.task.take();
        let panic = panic::catch_unwind(AssertUnwindSafe(move || drop(task))).err();
        self.pending.done(panic);
    }
}

/// Lets the scope wait on tasks that are still queued by running them itself, when the
/// scope's thread is one of the pool's workers.
trait Help: Send {
    /// Runs the task inline if it is still queued.
    fn help(&self) -> bool;
    /// Whether the task may still be queued (it exists and nobody has claimed it).
    fn queued(&self) -> bool;
}

/// A queued task, held weakly: its value is never kept alive by the scope.
struct Queued<T>(WeakFuture<T>);

impl<T: Send + 'static> Help for Queued<T> {
    fn help(&self) -> bool {
        self.0.upgrade().is_some_and(|fut| fut.help())
    }

    fn queued(&self) -> bool {
        self.0
            .upgrade()
            .is_some_and(|fut| fut.state() == crate::future::State::Pending)
    }
}

/// A scope for tasks that borrow from the caller's stack: made by
/// [`ThreadPoolExecutor::scope`].
///
/// # Examples
///
/// ```
/// use concurrent_futures::{as_completed, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new();
/// let words = vec!["apple".to_string(), "fig".to_string(), "cherry".to_string()];
/// let mut lengths = Vec::new();
/// pool.scope(|s| {
///     let futs: Vec<_> = words.iter().map(|w| s.submit(|| w.len()).unwrap()).collect();
///     for fut in as_completed(futs) {
///         lengths.push(fut.result().unwrap());
///     }
/// });
/// lengths.sort();
/// assert_eq!(lengths, [3, 5, 6]);
/// ```
pub struct Scope<'scope, 'env: 'scope> {
    pool: &'scope Arc<Shared>,
    pending: Arc<Pending>,
    /// The scope's own thread is one of the pool's workers: while it waits it runs the
    /// scope's queued tasks itself, so it needs their futures.
    helps: bool,
    /// Invariant in both lifetimes, as `std::thread::Scope` is.
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

impl ThreadPoolExecutor {
    /// Runs `body` with a [`Scope`] whose tasks may borrow anything that outlives the call
    /// (`std::thread::scope`, `rayon::scope`): every task submitted through the scope has
    /// finished, or was cancelled and dropped, before `scope` returns, whatever happened to
    /// its [`Future`] (dropped, leaked with `mem::forget`) and even if `body` panicked (the
    /// panic then resumes once the tasks are done). Inside, the futures are the usual ones:
    /// `result`, `as_completed`, `wait` and callbacks work unchanged.
    ///
    /// A task's panic is its future's error, as outside a scope; a scope does not re-raise
    /// it. A panic raised while dropping a closure that never ran (a cancelled task's
    /// captured values) does not stop the scope from waiting for the others; `scope` raises
    /// it once they are done. The scope keeps nothing of a finished task: what it holds is
    /// proportional to what is in flight, however many tasks it runs. Called on one of the pool's own workers, the scope runs its still-queued tasks
    /// inline while it waits, so `max_workers(1)` cannot deadlock.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::builder().max_workers(2).build()?;
    /// let mut numbers = vec![1, 2, 3, 4];
    /// let (left, right) = numbers.split_at_mut(2);
    /// pool.scope(|s| {
    ///     // Detached: the scope waits for them anyway.
    ///     let _ = s.submit(|| left.iter_mut().for_each(|x| *x *= 10)).unwrap();
    ///     let _ = s.submit(|| right.iter_mut().for_each(|x| *x += 1)).unwrap();
    /// }); // both have run here
    /// assert_eq!(numbers, [10, 20, 4, 5]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scope<'env, F, R>(&self, body: F) -> R
    where
        F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
    {
        let scope = Scope {
            pool: &self.shared,
            pending: Arc::new(Pending::default()),
            helps: crate::context::is_worker_of(self.shared.id),
            scope: PhantomData,
            env: PhantomData,
        };
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| body(&scope)));
        scope.pending.wait_for_zero();
        let dropped = scope.pending.take_drop_panic();
        match (outcome, dropped) {
            (Ok(value), None) => value,
            (Err(payload), _) | (Ok(_), Some(payload)) => panic::resume_unwind(payload),
        }
    }
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Schedules `task`, which may borrow from outside the scope, and returns its
    /// [`Future`].
    ///
    /// # Errors
    ///
    /// As [`ThreadPoolExecutor::submit`]: [`SubmitError::Shutdown`], [`SubmitError::Broken`]
    /// or [`SubmitError::Spawn`], with the task handed back boxed
    /// ([`ScopedTask`]), still callable.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let text = String::from("borrowed, not moved");
    /// let n = pool.scope(|s| s.submit(|| text.len()).unwrap().result().unwrap());
    /// assert_eq!(n, 19);
    /// assert_eq!(text, "borrowed, not moved"); // still ours
    /// ```
    ///
    /// A task cannot borrow what dies before the scope ends:
    ///
    /// ```compile_fail
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// pool.scope(|s| {
    ///     let local = vec![1, 2, 3]; // dropped at the end of the body, before the scope
    ///     let _ = s.submit(|| local.len());
    /// });
    /// ```
    pub fn submit<G, T>(
        &'scope self,
        task: G,
    ) -> Result<Future<T>, SubmitError<ScopedTask<'scope, T>>>
    where
        G: FnOnce() -> T + Send + 'scope,
        T: Send + 'static,
    {
        let task: ScopedTask<'scope, T> = Box::new(task);
        #[allow(unsafe_code)]
        // SAFETY: only the lifetime changes (the two box types differ in nothing else). The
        // erased closure is held by a `ScopedJob` counted in `pending` until the closure is
        // run or dropped (its `Drop` drops the closure first), and `scope` does not return or
        // unwind before `pending` is zero (module docs), so the closure is never used after
        // `'scope` ends. A refused job gives the closure back below with its lifetime
        // restored.
        let erased: Erased<T> =
            unsafe { std::mem::transmute::<ScopedTask<'scope, T>, Erased<T>>(task) };
        self.pending.add();
        let job = ScopedJob {
            task: Some(erased),
            pending: self.pending.clone(),
        };
        match self.pool.submit(job, None) {
            Ok(future) => {
                if self.helps {
                    self.pending.queued(Box::new(Queued(future.downgrade())));
                }
                Ok(future)
            }
            Err(refused) => Err(refused.map_task(|mut job| {
                let erased = job.task.take().expect("a refused job was never run");
                // The job drops here, uncounting itself; the closure goes back to the caller
                // with its real lifetime, so the borrow checker holds it to `'scope` again.
                let task: ScopedTask<'scope, T> = erased;
                task
            })),
        }
    }
}

impl std::fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("pending", &self.pending.state.lock().alive)
            .finish_non_exhaustive()
    }
}
