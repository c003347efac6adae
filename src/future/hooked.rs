//! [`Hooked`]: a promise whose `cancel` asks its owner first, for a future whose task runs
//! elsewhere (a Redis queue). Cancelling such a future means withdrawing the task before it
//! is taken; only if that works does the promise turn cancelled. The hook is the public-in-
//! crate way to do that: the owner supplies the withdrawal, the cell keeps its state machine
//! (`core`'s rules) to itself.

use std::sync::Arc;
use std::task::Waker;

use super::core::{self, Handle, Promised, Task, Waiter};
use super::{Future, State};
use crate::context::RunCtx;
use crate::error::TaskError;

/// What a [`Hooked`] future runs when it is cancelled.
pub(crate) trait CancelHook<T: Send + 'static>: Sized + Send + Sync + 'static {
    /// Cancels `task`'s future `fut` (whose callbacks get `fut`): withdraws the work, and if
    /// that worked, ends the promise with [`Hooked::cancel_promise`]. True if the future is
    /// cancelled now or was before, as `Future::cancel` says.
    fn cancel(task: &Hooked<T, Self>, fut: &Future<T>) -> bool;

    /// The id of the task, for `Future::task_id`.
    fn task_id(&self) -> Option<Arc<str>>;
}

/// A promise with a cancel hook: the task cell behind a Redis task's future.
pub(crate) struct Hooked<T, H> {
    cell: Arc<Task<T, Promised>>,
    hook: H,
}

impl<T: Send + 'static, H: CancelHook<T>> Hooked<T, H> {
    /// A pending promise whose `cancel` is `hook`'s.
    pub(crate) fn new(hook: H) -> Arc<Self> {
        Arc::new(Hooked {
            cell: Task::new(Promised, 0),
            hook,
        })
    }

    /// A future of this task.
    pub(crate) fn future(self: &Arc<Self>) -> Future<T> {
        Future::from_task(self.clone())
    }

    pub(crate) fn hook(&self) -> &H {
        &self.hook
    }

    pub(crate) fn state(&self) -> State {
        core::state_of(self.cell.word())
    }

    /// PENDING -> RUNNING: a worker elsewhere took the task. False if not pending.
    pub(crate) fn set_running(&self) -> bool {
        self.cell.set_running()
    }

    /// PENDING -> CANCELLED without asking the hook (the work is known withdrawn). True if
    /// cancelled now or before.
    pub(crate) fn cancel_promise(&self, fut: &Future<T>) -> bool {
        self.cell.cancel(fut)
    }

    /// Ends the future with `outcome`, unless it is done (the outcome comes back).
    pub(crate) fn finish(
        &self,
        outcome: Result<T, TaskError>,
        fut: &Future<T>,
    ) -> Result<(), Result<T, TaskError>> {
        self.cell.finish(outcome, fut)
    }
}

impl<T: Send + 'static, H: CancelHook<T>> Handle<T> for Hooked<T, H> {
    fn word(&self) -> u32 {
        self.cell.word()
    }
    fn owner(&self) -> u32 {
        0 // no pool runs it here
    }
    fn add_waiter(&self, waiter: Waiter<T>) -> Result<(), Waiter<T>> {
        self.cell.add_waiter(waiter)
    }
    fn register_waker(&self, waker: &Waker) -> bool {
        self.cell.register_waker(waker)
    }
    fn remove_waiters(&self, remove: &dyn Fn(&Waiter<T>) -> bool) {
        self.cell.remove_waiters(remove);
    }
    fn take(&self) -> Result<T, TaskError> {
        self.cell.take()
    }
    fn error(&self) -> Option<TaskError> {
        self.cell.error()
    }
    fn cancel(&self, fut: &Future<T>) -> bool {
        H::cancel(self, fut)
    }
    fn set_running(&self) -> bool {
        self.cell.set_running()
    }
    fn finish(
        &self,
        outcome: Result<T, TaskError>,
        fut: &Future<T>,
    ) -> Result<(), Result<T, TaskError>> {
        self.cell.finish(outcome, fut)
    }
    fn run(&self, _fut: &Future<T>, _ctx: Option<&RunCtx<'_>>) -> bool {
        false // it runs elsewhere
    }
    fn task_id(&self) -> Option<Arc<str>> {
        self.hook.task_id()
    }
}
