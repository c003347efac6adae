//! The state a process pool's handle and its manager threads share: the job queue and the
//! manager threads (a [`Registry`] of jobs: started lazily, reused while idle, retired after
//! `idle_timeout`, as the thread pool's workers are), the list of worker processes, which
//! worker holds which task (for `kill_task`), shutdown and breakage.
//!
//! How a manager thread is started and what it runs is `manager.rs`'s (it implements
//! [`Pool`](crate::registry::Pool) for [`Shared`]); this module never names it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

use super::child::Workers;
use super::config::Config;
use super::connection::{Connection, Control};
use super::job::Job;
use crate::callbacks::CallbackPool;
use crate::context::CallbackSink;
use crate::error::{SubmitError, TaskError};
use crate::registry::{Pushed, Refusal, Registry};

static NEXT_POOL: AtomicU32 = AtomicU32::new(1);

pub(super) struct Shared {
    pub(super) id: u32,
    pub(super) config: Config,
    /// The job queue and the manager threads.
    pub(super) registry: Registry<Job>,
    /// Worker starts that failed in a row, pool-wide.
    start_failures: AtomicU32,
    /// The worker `build` started, for the first manager to take.
    first: Mutex<Option<Connection>>,
    /// Every worker process that exists, for `terminate`.
    workers: Arc<Workers>,
    /// Which worker holds which future's task, for `kill_task`: a lock of its own, so the
    /// managers' per-job bookkeeping never waits on anything else.
    holders: Mutex<Holders>,
    /// Where the done-callbacks of this pool's futures run: never on a manager thread, so a
    /// callback may wait on the pool or shut it down.
    callbacks: Arc<CallbackPool>,
}

#[derive(Default)]
struct Holders {
    /// The futures whose tasks a worker holds now (running, or sent ahead to it), by
    /// identity, with where that worker's manager takes `kill_task` requests.
    running: Vec<(usize, Arc<Control>)>,
}

/// Why the pool refuses a task, as a [`SubmitError`] around what the caller gets back.
pub(super) fn refused<F>(refusal: Refusal, task: F) -> SubmitError<F> {
    match refusal {
        Refusal::Shutdown => SubmitError::Shutdown(task),
        Refusal::Broken(reason) => SubmitError::Broken { task, reason },
    }
}

impl Shared {
    pub(super) fn new(config: Config) -> Arc<Shared> {
        // ORDERING: a unique number, nothing published with it: Relaxed.
        let id = NEXT_POOL.fetch_add(1, Ordering::Relaxed);
        let callbacks = CallbackPool::new(format!("ProcessPoolExecutor-{id}-callbacks"));
        Arc::new(Shared {
            id,
            registry: Registry::new("process", config.max_workers, config.idle_timeout, true),
            config,
            start_failures: AtomicU32::new(0),
            first: Mutex::new(None),
            workers: Arc::new(Workers::default()),
            holders: Mutex::new(Holders::default()),
            callbacks,
        })
    }

    /// Queues a job, starting a manager for it if none is idle. If the pool refused it, or a
    /// shutdown raced with it and `take_back` (cancelling its future) worked, reports the
    /// refusal; a job that a manager took first runs.
    pub(super) fn push(
        self: &Arc<Self>,
        job: Job,
        take_back: &dyn Fn() -> bool,
    ) -> Result<(), Refusal> {
        match Registry::push(self, job) {
            Pushed::Queued => Ok(()),
            Pushed::Refused(refusal, job) => {
                job.sink.cancel();
                Err(refusal)
            }
            Pushed::Raced(refusal) => {
                if take_back() {
                    Err(refusal)
                } else {
                    Ok(())
                }
            }
            Pushed::NoWorker { error, alone: true } => {
                // Nothing would ever take the job: it fails with the pool.
                self.break_pool(format!("cannot start a manager thread: {error}"));
                Ok(())
            }
            Pushed::NoWorker {
                error,
                alone: false,
            } => {
                log::warn!(target: "concurrent_futures", "could not start a manager thread: {error}");
                Ok(())
            }
        }
    }

    /// Starts the first manager, with the worker `build` started.
    pub(super) fn start_manager(self: &Arc<Self>, worker: Connection) -> std::io::Result<()> {
        *self.first.lock() = Some(worker);
        Registry::spawn(self)
    }

    /// The pool's list of worker processes.
    pub(super) fn workers(&self) -> &Arc<Workers> {
        &self.workers
    }

    /// The worker `build` started, for the manager that takes it first.
    pub(super) fn take_first(&self) -> Option<Connection> {
        self.first.lock().take()
    }

    /// Where manager threads send the callbacks of the futures they complete.
    pub(super) fn callback_sink(&self) -> CallbackSink {
        self.callbacks.sink()
    }

    /// Starts a worker for a job, counting failures in a row: past the limit the pool breaks.
    /// A replacement started ahead of any job (`for_job` false) only logs its failure: the
    /// next job tries again, and counts.
    pub(super) fn start_worker(self: &Arc<Self>, for_job: bool) -> Result<Connection, TaskError> {
        match Connection::start(&self.config, &self.workers) {
            Ok(conn) => {
                // ORDERING: a count of consecutive failures that decides when to break the
                // pool; no other memory is read on its strength, so Relaxed.
                self.start_failures.store(0, Ordering::Relaxed);
                Ok(conn)
            }
            Err(why) => {
                if self.workers.terminating() {
                    return Err(TaskError::Cancelled);
                }
                if !for_job {
                    return Err(TaskError::WorkerDied(why.into()));
                }
                // ORDERING: as above.
                let failures = self.start_failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failures >= self.config.max_start_failures {
                    let reason =
                        format!("{failures} worker processes in a row failed to start: {why}");
                    self.break_pool(reason.clone());
                    Err(TaskError::BrokenExecutor(reason.into()))
                } else {
                    Err(TaskError::WorkerDied(why.into()))
                }
            }
        }
    }

    /// The worker behind `control` now holds (or is about to hold) the task of future `id`.
    pub(super) fn running(&self, id: usize, control: &Arc<Control>) {
        let mut holders = self.holders.lock();
        holders.running.retain(|(r, _)| *r != id);
        holders.running.push((id, control.clone()));
    }

    /// The job of future `id` is over on its worker.
    pub(super) fn finished(&self, id: usize) {
        self.holders.lock().running.retain(|(r, _)| *r != id);
    }

    /// Asks the manager of the worker that holds future `id`'s task to kill it if it is
    /// the task that worker is running; true if it was killed (its future is then
    /// cancelled). Blocks only until that manager answers, which it does from its wait on
    /// the worker, or when it is done with the job or the worker.
    pub(super) fn kill_task(&self, id: usize) -> bool {
        let answer = {
            let holders = self.holders.lock();
            let Some((_, control)) = holders.running.iter().find(|(r, _)| *r == id) else {
                return false;
            };
            // Under the holders' lock: the manager cannot finish with the task unseen.
            control.request_kill(id)
        };
        answer.recv().unwrap_or(false)
    }

    pub(super) fn worker_pids(&self) -> Vec<u32> {
        self.workers.pids()
    }

    pub(super) fn broken(&self) -> Option<Arc<str>> {
        self.registry.broken()
    }

    pub(super) fn is_shutdown(&self) -> bool {
        self.registry.is_shutdown()
    }

    /// Workers keep failing to start: refuse new tasks and fail every queued one.
    pub(super) fn break_pool(&self, reason: String) {
        let reason: Arc<str> = reason.into();
        log::error!(target: "concurrent_futures", "process pool broken: {reason}");
        // Completions (and the callbacks they may run on this thread) happen outside any
        // lock.
        for job in self.registry.break_with(&reason) {
            job.sink.fail(TaskError::BrokenExecutor(reason.clone()));
        }
    }

    pub(super) fn shutdown(&self, wait: bool, cancel_futures: bool) {
        for job in self.registry.shutdown(cancel_futures) {
            job.sink.cancel(); // its callbacks may run here: no lock is held
        }
        if !wait {
            return;
        }
        // Every manager has reaped its worker; callbacks already handed out still run.
        self.registry.join();
        self.callbacks.shutdown();
    }

    /// Kills every worker, starting or running, and cancels what is queued.
    pub(super) fn terminate(&self) {
        let workers = self.workers.terminate();
        self.shutdown(false, true);
        for worker in workers {
            worker.kill();
        }
        self.shutdown(true, false);
    }
}
