//! The state a process pool's handle and its manager threads share: the job queue, the
//! manager threads (started lazily), the list of worker processes, shutdown and breakage.
//!
//! Managers start as work arrives, as the thread pool's workers do: `surplus` is idle
//! managers minus queued jobs. A submit subtracts one and starts a manager if that leaves
//! none idle for it (below `max_workers`); a manager adds one when it becomes idle (at
//! start, and after each job just before it completes the job's future, so the caller's next
//! submit finds it idle). Both, and a manager's decision to retire after `idle_timeout`, run
//! under the state lock, so no job is ever left without a manager and an idle manager (with
//! its warm worker) is always used before a new one is started.

use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use super::builder::Config;
use super::child::Process;
use super::codec;
use super::connection::{Connection, Control};
use super::job::Job;
use super::manager;
use crate::context::CallbackSink;
use crate::error::{SubmitError, TaskError};
use crate::thread::ThreadPoolExecutor;

static NEXT_POOL: AtomicU32 = AtomicU32::new(1);

/// How many callbacks of one pool's futures may block at once before the next waits.
const CALLBACK_THREADS: usize = 64;

pub(super) struct Shared {
    pub(super) id: u32,
    pub(super) config: Config,
    jobs_tx: Sender<Option<Job>>,
    jobs_rx: Receiver<Option<Job>>,
    surplus: AtomicIsize,
    /// Worker starts that failed in a row, pool-wide.
    start_failures: AtomicU32,
    state: Mutex<PoolState>,
    /// Set with `state.broken`, so managers check it without the state lock.
    is_broken: AtomicBool,
    /// Which worker holds which future's task, for `kill_task`: a lock of its own, so the
    /// managers' per-job bookkeeping never waits on submits, which take `state`.
    holders: Mutex<Holders>,
    /// Where the done-callbacks of this pool's futures run: never on a manager thread, so a
    /// callback may wait on the pool or shut it down.
    callbacks: ThreadPoolExecutor,
}

struct PoolState {
    shutdown: bool,
    /// Set by `terminate`: a worker registered from now on is killed at once.
    terminating: bool,
    broken: Option<Arc<str>>,
    /// Live manager threads.
    managers: usize,
    spawned: usize,
    /// Manager threads not yet joined.
    handles: Vec<JoinHandle<()>>,
    /// Every worker process that exists, starting or running.
    workers: Vec<Arc<Process>>,
}

#[derive(Default)]
struct Holders {
    /// The futures whose tasks a worker holds now (running, or sent ahead to it), by
    /// identity, with where that worker's manager takes `kill_task` requests.
    running: Vec<(usize, Arc<Control>)>,
}

/// Why the pool refuses a task; becomes a [`SubmitError`] around what the caller gets back.
pub(super) enum Refusal {
    Shutdown,
    Broken(Arc<str>),
}

impl Refusal {
    pub(super) fn into_error<F>(self, task: F) -> SubmitError<F> {
        match self {
            Refusal::Shutdown => SubmitError::Shutdown(task),
            Refusal::Broken(reason) => SubmitError::Broken { task, reason },
        }
    }
}

impl Shared {
    pub(super) fn new(config: Config) -> Arc<Shared> {
        // ORDERING: a unique number, nothing published with it: Relaxed.
        let id = NEXT_POOL.fetch_add(1, Ordering::Relaxed);
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        let callbacks = ThreadPoolExecutor::builder()
            .max_workers(CALLBACK_THREADS)
            .idle_timeout(Duration::from_secs(1))
            .thread_name_prefix(format!("ProcessPoolExecutor-{id}-callbacks"))
            .build()
            .expect("a valid thread pool configuration");
        Arc::new(Shared {
            id,
            config,
            jobs_tx,
            jobs_rx,
            surplus: AtomicIsize::new(0),
            start_failures: AtomicU32::new(0),
            state: Mutex::new(PoolState {
                shutdown: false,
                terminating: false,
                broken: None,
                managers: 0,
                spawned: 0,
                handles: Vec::new(),
                workers: Vec::new(),
            }),
            is_broken: AtomicBool::new(false),
            holders: Mutex::new(Holders::default()),
            callbacks,
        })
    }

    /// Queues a job, starting a manager for it if none is idle. If the pool shut down or
    /// broke, takes the job back (cancelled) and reports the refusal.
    pub(super) fn push(self: &Arc<Self>, job: Job) -> Result<(), Refusal> {
        let mut state = self.state.lock();
        let refusal = match &state.broken {
            Some(reason) => Some(Refusal::Broken(reason.clone())),
            None => state.shutdown.then_some(Refusal::Shutdown),
        };
        if let Some(refusal) = refusal {
            job.sink.cancel();
            return Err(refusal);
        }
        // Under the state lock, so no shutdown's stop messages can be queued ahead of it.
        let _ = self.jobs_tx.send(Some(job));
        // ORDERING: the `surplus` rule (as in the thread pool) rests on every change being a
        // read-modify-write of this one atomic, so that none is lost: an idle mark happens
        // without the lock, a push and a retirement under it. AcqRel is more than that needs,
        // at the cost of Relaxed on x86 (a locked instruction either way).
        if self.surplus.fetch_sub(1, Ordering::AcqRel) < 1
            && state.managers < self.config.max_workers
        {
            match self.spawn_manager(&mut state, None) {
                Ok(retired) => {
                    drop(state);
                    join_all(retired);
                }
                Err(e) if state.managers == 0 => {
                    drop(state);
                    self.break_pool(format!("cannot start a manager thread: {e}"));
                }
                Err(e) => {
                    log::warn!(target: "concurrent_futures", "could not start a manager thread: {e}");
                }
            }
        }
        Ok(())
    }

    /// Starts the first manager, with the worker `build` started.
    pub(super) fn start_manager(self: &Arc<Self>, worker: Connection) -> std::io::Result<()> {
        let mut state = self.state.lock();
        let retired = self.spawn_manager(&mut state, Some(worker))?;
        drop(state);
        join_all(retired);
        Ok(())
    }

    /// Starts a manager thread; returns the retired managers' threads, to be joined once the
    /// state lock is released.
    fn spawn_manager(
        self: &Arc<Self>,
        state: &mut PoolState,
        worker: Option<Connection>,
    ) -> std::io::Result<Vec<JoinHandle<()>>> {
        let shared = self.clone();
        let handle = std::thread::Builder::new()
            .name(format!("ProcessPoolExecutor-{}_{}", self.id, state.spawned))
            // Results are decoded here: room for the deepest value the codec accepts.
            .stack_size(codec::DECODE_STACK)
            .spawn(move || manager::run(shared, worker))?;
        // Retired managers have returned; the caller joins them so that they do not pile up.
        let (done, live): (Vec<_>, Vec<_>) = std::mem::take(&mut state.handles)
            .into_iter()
            .partition(JoinHandle::is_finished);
        state.handles = live;
        state.handles.push(handle);
        // Idle from now, not from when its thread gets going: a submit right after `build`
        // must find the first manager rather than start a second.
        self.mark_idle();
        state.managers += 1;
        state.spawned += 1;
        Ok(done)
    }

    /// The next message for a manager: a job, or `None` to stop. Waits at most `idle`, after
    /// which `Err(())` says the manager may retire (it is no longer counted).
    pub(super) fn next_job(&self, idle: Option<Duration>) -> Result<Option<Job>, ()> {
        // A caller that waits on its result and submits again at once is back within a few
        // microseconds: look for its next job briefly before sleeping, which would cost a
        // wake-up on the way.
        let backoff = crossbeam_utils::Backoff::new();
        while !backoff.is_completed() {
            if let Ok(message) = self.jobs_rx.try_recv() {
                return Ok(message);
            }
            backoff.snooze();
        }
        loop {
            let Some(idle) = idle else {
                return Ok(self.jobs_rx.recv().unwrap_or(None));
            };
            match self.jobs_rx.recv_timeout(idle) {
                Ok(message) => return Ok(message),
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
                Err(RecvTimeoutError::Timeout) => {
                    let mut state = self.state.lock();
                    // Retire unless that leaves a queued job without a manager.
                    // ORDERING: as in `push`; the state lock orders it against a push's
                    // check of `managers`.
                    if self.surplus.fetch_sub(1, Ordering::AcqRel) < 1 {
                        self.surplus.fetch_add(1, Ordering::AcqRel);
                        continue;
                    }
                    state.managers -= 1;
                    return Err(());
                }
            }
        }
    }

    /// A job (or the stop message) if one is queued now, without waiting.
    pub(super) fn try_next_job(&self) -> Option<Option<Job>> {
        self.jobs_rx.try_recv().ok()
    }

    /// How many jobs (and stop messages) are queued.
    pub(super) fn queued(&self) -> usize {
        self.jobs_rx.len()
    }

    /// A manager is idle: it counts against the queue.
    pub(super) fn mark_idle(&self) {
        // ORDERING: as in `push`.
        self.surplus.fetch_add(1, Ordering::AcqRel);
    }

    /// A manager stopped by shutdown leaves.
    pub(super) fn manager_stopped(&self) {
        self.state.lock().managers -= 1;
    }

    /// Where manager threads send the callbacks of the futures they complete.
    pub(super) fn callback_sink(self: &Arc<Self>) -> CallbackSink {
        let shared = Arc::downgrade(self);
        Arc::new(move |callbacks: Box<dyn FnOnce() + Send>| {
            let refused = match shared.upgrade() {
                Some(shared) => match shared.callbacks.submit(callbacks) {
                    Ok(_detached) => None,
                    Err(refused) => Some(refused.into_inner()),
                },
                None => Some(callbacks),
            };
            // The callback pool is shutting down: run them here rather than lose them.
            if let Some(callbacks) = refused {
                callbacks();
            }
        })
    }

    /// Starts a worker for a job, counting failures in a row: past the limit the pool breaks.
    /// A replacement started ahead of any job (`for_job` false) only logs its failure: the
    /// next job tries again, and counts.
    pub(super) fn start_worker(self: &Arc<Self>, for_job: bool) -> Result<Connection, TaskError> {
        match Connection::start(self) {
            Ok(conn) => {
                // ORDERING: a count of consecutive failures that decides when to break the
                // pool; no other memory is read on its strength, so Relaxed.
                self.start_failures.store(0, Ordering::Relaxed);
                Ok(conn)
            }
            Err(why) => {
                if self.state.lock().terminating {
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

    /// Adds a worker to the list `terminate` kills; false (and killed) if it is too late.
    pub(super) fn register(&self, process: Arc<Process>) -> bool {
        let mut state = self.state.lock();
        if state.terminating {
            process.kill();
            return false;
        }
        state.workers.push(process);
        true
    }

    pub(super) fn unregister(&self, process: &Arc<Process>) {
        self.state
            .lock()
            .workers
            .retain(|p| !Arc::ptr_eq(p, process));
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
        self.state.lock().workers.iter().map(|p| p.pid()).collect()
    }

    pub(super) fn broken(&self) -> Option<Arc<str>> {
        // ORDERING: pairs with the Release store in `break_pool`; the reason itself is read
        // under the state lock.
        if !self.is_broken.load(Ordering::Acquire) {
            return None; // the common case, without the state lock
        }
        self.state.lock().broken.clone()
    }

    pub(super) fn is_shutdown(&self) -> bool {
        self.state.lock().shutdown
    }

    /// Workers keep failing to start: refuse new tasks and fail every queued one.
    pub(super) fn break_pool(&self, reason: String) {
        let reason: Arc<str> = reason.into();
        log::error!(target: "concurrent_futures", "process pool broken: {reason}");
        self.state.lock().broken.get_or_insert(reason.clone());
        // ORDERING: Release, after the reason is set under the state lock (see `broken`).
        self.is_broken.store(true, Ordering::Release);
        // Pushes now fail; what was queued before fails here. Completions (and the callbacks
        // they may run on this thread) happen outside the lock.
        for job in self.drain() {
            job.sink.fail(TaskError::BrokenExecutor(reason.clone()));
        }
    }

    /// Takes every queued job out, putting back the stop messages.
    fn drain(&self) -> Vec<Job> {
        let mut jobs = Vec::new();
        let mut stops = 0;
        while let Ok(message) = self.jobs_rx.try_recv() {
            match message {
                Some(job) => jobs.push(job),
                None => stops += 1,
            }
        }
        for _ in 0..stops {
            let _ = self.jobs_tx.send(None);
        }
        jobs
    }

    pub(super) fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let (cancelled, handles) = {
            let mut state = self.state.lock();
            let cancelled = if cancel_futures {
                self.drain()
            } else {
                Vec::new()
            };
            if !state.shutdown {
                state.shutdown = true;
                for _ in 0..state.managers {
                    let _ = self.jobs_tx.send(None);
                }
            }
            let handles = if wait {
                std::mem::take(&mut state.handles)
            } else {
                Vec::new()
            };
            (cancelled, handles)
        };
        for job in cancelled {
            job.sink.cancel(); // its callbacks may run here: no lock is held
        }
        if !wait {
            return;
        }
        let me = std::thread::current().id();
        for handle in handles {
            if handle.thread().id() == me {
                continue; // a manager shutting its own pool down (from a Drop in user code)
            }
            let _ = handle.join();
        }
        // Every manager has reaped its worker; callbacks already handed out still run.
        self.callbacks.shutdown();
    }

    /// Kills every worker, starting or running, and cancels what is queued.
    pub(super) fn terminate(&self) {
        let workers = {
            let mut state = self.state.lock();
            state.terminating = true;
            state.workers.clone()
        };
        self.shutdown(false, true);
        for worker in workers {
            worker.kill();
        }
        self.shutdown(true, false);
    }
}

/// Joins threads that have returned (outside any lock: joining waits for their
/// thread-local destructors).
fn join_all(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.join();
    }
}
