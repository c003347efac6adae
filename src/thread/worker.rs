//! The thread pool's own part of the engine: how a worker thread starts and what it runs
//! (the initializer, tasks, their time limits, the per-worker counters), and submitting with
//! the take-back of a closure whose submit raced a shutdown. The queue, idleness, retirement,
//! breakage and shutdown are the [`Registry`]'s.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use super::Shared;
use super::watchdog::{Limited, Watchdog};
use crate::context::{RunCtx, WorkerCounters, WorkerGuard};
use crate::error::{SubmitError, TaskError};
use crate::future::{Future, Job, Runnable, Task};
use crate::registry::{Next, Pool, Pushed, Refusal, Registry};

/// A refused task's closure, out of its span's wrapper.
#[cfg(any(feature = "tracing", feature = "metrics"))]
fn untraced<J>(job: crate::trace::Traced<J>) -> J {
    job.into_inner()
}

#[cfg(not(any(feature = "tracing", feature = "metrics")))]
fn untraced<J>(job: J) -> J {
    job
}

impl Pool for Shared {
    type Message = Arc<dyn Runnable>;

    fn registry(&self) -> &Registry<Arc<dyn Runnable>> {
        &self.registry
    }

    fn spawn_thread(self: &Arc<Self>, n: usize) -> std::io::Result<JoinHandle<()>> {
        let name = format!("{}_{n}", self.config.thread_name_prefix(self.id));
        let mut builder = std::thread::Builder::new().name(name);
        if let Some(size) = self.config.stack_size {
            builder = builder.stack_size(size);
        }
        let shared = self.clone();
        let counters = Arc::new(WorkerCounters::default());
        // Counted before it can run anything, so that no task it runs is ever missing from
        // the totals.
        self.counters.lock().workers.push(counters.clone());
        let mine = counters.clone();
        builder.spawn(move || shared.work(mine)).inspect_err(|_| {
            self.counters
                .lock()
                .workers
                .retain(|w| !Arc::ptr_eq(w, &counters));
        })
    }
}

impl Shared {
    /// Tasks started and completed, summed over the workers, live and retired.
    pub(super) fn counts(&self) -> (usize, usize) {
        let counters = self.counters.lock();
        // Completed first: a task moving along is then never counted completed but not started.
        // ORDERING: Acquire pairs with the workers' Release increments
        // (`context::WorkerCounters::bump`), so the `started` read after a `completed` is at
        // least as new as it.
        counters.workers.iter().fold(counters.retired, |(s, c), w| {
            let done = w.completed.load(Ordering::Acquire);
            (s + w.started.load(Ordering::Acquire), c + done)
        })
    }

    /// A leaving worker's counts join the totals, in one step with its leaving the list.
    fn fold(&self, mine: &Arc<WorkerCounters>) {
        let mut counters = self.counters.lock();
        // ORDERING: runs on the worker thread that made the increments: program order is
        // enough, and Acquire is more than it needs.
        counters.retired.0 += mine.started.load(Ordering::Acquire);
        counters.retired.1 += mine.completed.load(Ordering::Acquire);
        counters.workers.retain(|w| !Arc::ptr_eq(w, mine));
    }

    pub(super) fn refusal<F>(&self, refusal: Refusal, task: F) -> SubmitError<F> {
        match refusal {
            Refusal::Shutdown => SubmitError::Shutdown(task),
            Refusal::Broken(reason) => SubmitError::Broken { task, reason },
        }
    }

    /// Queues `func`, with a time limit of its own if `limit` is set.
    pub(super) fn submit<J, T>(
        self: &Arc<Self>,
        func: J,
        limit: Option<Duration>,
    ) -> Result<Future<T>, SubmitError<J>>
    where
        J: Job<T>,
        T: Send + 'static,
    {
        if limit.is_some() {
            if let Err(error) = self.watchdog() {
                return Err(SubmitError::Spawn {
                    task: func,
                    error: Arc::new(error),
                });
            }
        }
        #[cfg(any(feature = "tracing", feature = "metrics"))]
        let func = crate::trace::Traced::new(func, "thread");
        let task = Task::new(func, self.id);
        let message: Arc<dyn Runnable> = match limit {
            None => task.clone(),
            Some(limit) => Arc::new(Limited {
                task: task.clone(),
                limit,
            }),
        };
        match Registry::push(self, message) {
            Pushed::Queued => {}
            // Refused, or a shutdown raced with the push (the registry's rule 3): the closure
            // goes back to the caller unless a worker took the task first, in which case it
            // runs.
            Pushed::Refused(refusal, _) | Pushed::Raced(refusal) => {
                if let Some(func) = task.reclaim().map(untraced) {
                    return Err(self.refusal(refusal, func));
                }
            }
            Pushed::NoWorker { error, alone } => {
                if alone {
                    if let Some(func) = task.reclaim().map(untraced) {
                        return Err(SubmitError::Spawn {
                            task: func,
                            error: Arc::new(error),
                        });
                    }
                }
                log::warn!(target: "concurrent_futures", "could not start a worker thread: {error}");
            }
        }
        Ok(Future::from_task(task))
    }

    /// The watchdog, started now if it was not yet.
    fn watchdog(&self) -> std::io::Result<&Arc<Watchdog>> {
        if let Some(watchdog) = self.watchdog.get() {
            return Ok(watchdog);
        }
        let _starting = self.watchdog_start.lock();
        if let Some(watchdog) = self.watchdog.get() {
            return Ok(watchdog);
        }
        let name = format!("{}-watchdog", self.config.thread_name_prefix(self.id));
        let (started, _detached) = Watchdog::start(name)?;
        Ok(self.watchdog.get_or_init(|| started))
    }

    /// The worker thread's body.
    pub(super) fn work(self: Arc<Self>, counters: Arc<WorkerCounters>) {
        let _worker = WorkerGuard::enter(self.id, counters.clone());
        if let Some(init) = &self.config.initializer {
            if let Err(reason) = init() {
                log::error!(target: "concurrent_futures", "thread pool initializer failed: {reason}");
                self.break_pool(reason);
                self.registry.exit(|| self.fold(&counters));
                return;
            }
        }
        let mark_idle = || self.registry.mark_idle();
        let ctx = RunCtx {
            counters: &counters,
            mark_idle: Some(&mark_idle),
        };
        // This worker's watchdog slot, taken at its first limited task. A limited task was
        // queued after the watchdog started, so the queue's hand-over shows it started.
        let mut timed: Option<(&Arc<Watchdog>, usize)> = None;
        let stopped = loop {
            match self.registry.next(|| self.fold(&counters)) {
                // A task that ran here already marked the worker idle, before it published
                // the result.
                Next::Message(task) => {
                    let limit = task.time_limit().or(self.config.time_limit);
                    let slot = limit.and_then(|limit| {
                        let watchdog = self.watchdog.get()?;
                        let (watchdog, slot) =
                            *timed.get_or_insert_with(|| (watchdog, watchdog.enter()));
                        watchdog.begin(slot, &task, limit);
                        Some((watchdog, slot))
                    });
                    let ran = task.run(&ctx);
                    if let Some((watchdog, slot)) = slot {
                        watchdog.end(slot);
                    }
                    if !ran {
                        self.registry.mark_idle();
                    }
                }
                Next::Stop => break true,
                // Already uncounted, its counts folded.
                Next::Retire => break false,
            }
        };
        if let Some((watchdog, slot)) = timed {
            watchdog.leave(slot);
        }
        if stopped {
            self.registry.exit(|| self.fold(&counters));
        }
    }

    /// An initializer failed: refuse new tasks and fail every queued one (Python's
    /// `BrokenThreadPool`).
    fn break_pool(&self, reason: String) {
        let reason: Arc<str> = Arc::from(reason);
        for task in self.registry.break_with(&reason) {
            task.fail(TaskError::BrokenExecutor(reason.clone()));
        }
    }

    pub(super) fn shutdown(&self, wait: bool, cancel_futures: bool) {
        // Python's `cancel_futures=True`: what is still queued is cancelled.
        for task in self.registry.shutdown(cancel_futures) {
            task.cancel();
        }
        if wait {
            self.registry.join();
        }
    }
}
