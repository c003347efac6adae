//! Where the current thread works: the pool it is a worker of, with its task counters, and
//! where the done-callbacks of the futures it completes go (tokio's `runtime/context.rs`
//! role).
//!
//! The task cell ([`future`](crate::future)) reads this module and knows nothing of pools:
//! a thread pool's worker enters its pool here ([`WorkerGuard`]) so that a waiting worker can
//! run a queued task of its own pool inline (`future::help`), and a thread that must never
//! run user code (a process pool's manager, a Redis client's reader) sends callbacks
//! elsewhere ([`defer_callbacks`]). Nothing here imports the rest of the crate but `sync`.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_utils::CachePadded;

use crate::sync::AtomicUsize;

/// Where a task runs: the worker's counters, and how it marks itself idle.
pub(crate) struct RunCtx<'a> {
    pub(crate) counters: &'a WorkerCounters,
    pub(crate) mark_idle: Option<&'a dyn Fn()>,
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
        // ORDERING: Release pairs with the Acquire loads of the pool's statistics readers,
        // so a count read there includes every task this worker finished before it.
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Release);
    }
}

thread_local! {
    /// The pool this thread is a worker of, and its counters; `None` on other threads.
    static WORKER_OF: RefCell<Option<(u32, Arc<WorkerCounters>)>> = const { RefCell::new(None) };
    /// Where this thread sends the callbacks of the futures it completes; `None` to run them.
    static DEFER_CALLBACKS: RefCell<Option<CallbackSink>> = const { RefCell::new(None) };
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

/// Returns `true` on a worker thread of any pool: only there can `help` run anything.
pub(crate) fn is_worker() -> bool {
    WORKER_OF.with(|w| w.borrow().is_some())
}

/// Returns `true` on a worker thread of pool `id`.
pub(crate) fn is_worker_of(id: u32) -> bool {
    WORKER_OF.with(|w| matches!(&*w.borrow(), Some((me, _)) if *me == id))
}

/// The counters of this thread, if it is a worker of pool `id`.
pub(crate) fn counters_if_worker_of(id: u32) -> Option<Arc<WorkerCounters>> {
    WORKER_OF.with(|w| match &*w.borrow() {
        Some((me, counters)) if *me == id => Some(counters.clone()),
        _ => None,
    })
}

/// Where a thread sends the done-callbacks of the futures it completes, instead of running
/// them itself.
pub(crate) type CallbackSink = Arc<dyn Fn(Box<dyn FnOnce() + Send>) + Send + Sync>;

/// From now on, the callbacks of futures that this thread completes run wherever `sink`
/// sends them (in order, all of one future's together). For threads that must never run
/// user code that could wait on them: a process pool's managers, a Redis client's threads.
#[cfg(any(all(unix, feature = "process"), feature = "redis"))]
pub(crate) fn defer_callbacks(sink: CallbackSink) {
    DEFER_CALLBACKS.with(|d| *d.borrow_mut() = Some(sink));
}

/// Where this thread's callbacks go, if it defers them (also `None` while the thread is
/// being torn down).
pub(crate) fn callback_sink() -> Option<CallbackSink> {
    DEFER_CALLBACKS
        .try_with(|d| d.borrow().clone())
        .ok()
        .flatten()
}
