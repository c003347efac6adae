//! [`RedisWorker`]: takes tasks from the queue, runs them under a lease, and replies.
//!
//! Three threads per worker, each with its own connection:
//!
//! - the *reader* takes new entries (`XREADGROUP ... BLOCK`), as many as there are free
//!   slots, and starts them;
//! - the *keeper*, every third of a lease, renews the lease of every entry this worker runs
//!   (the `renew` script: `XCLAIM ... JUSTID` on entries it still owns), sends a heartbeat,
//!   and reclaims entries whose worker stopped renewing (`XAUTOCLAIM` past one lease),
//!   failing those delivered `max_deliveries` times as lost;
//! - the *finisher* collects outcomes, enforces time limits and retries, and sends the
//!   replies in pipelined batches through the `finish` script, which applies a reply only if
//!   this worker still holds the entry on the same delivery (the fence).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};

use super::conn::Link;
use super::tasks::{Outcome, Tasks};
use super::wire::{self, Keys, Route, Scripts, TaskEntry};
use crate::error::TaskError;
use crate::thread::ThreadPoolExecutor;

mod builder;
mod finisher;
mod keeper;
#[cfg(feature = "metrics")]
mod meter;
mod reader;

pub use self::builder::RedisWorkerBuilder;

use self::builder::Config;

/// How long the reader's `XREADGROUP BLOCK` waits before it looks around.
const BLOCK: Duration = Duration::from_secs(2);

/// How often each worker moves due scheduled tasks into the queue: a task runs at most
/// about this late (plus a read of the queue), while any worker is alive.
const PROMOTE_EVERY: Duration = Duration::from_millis(250);

/// The most scheduled tasks one promotion moves; it goes on while there are more.
const PROMOTE_BATCH: u64 = 500;

/// Dead letters kept (approximately) in the dead-letter stream.
const DEAD_MAX: u64 = 10_000;

/// The longest part of a refused entry's argument copied into its dead letter.
const DEAD_PREVIEW: usize = 4096;

/// The `run` of a task whose answer is on its way: no outcome counts any more.
const ANSWERED: u64 = u64::MAX;

/// How long a task runs before its worker tells Redis (for `status` and `running()`): a
/// round trip of the reader's, shared by all the tasks that started meanwhile.
const START_NOTICE: Duration = Duration::from_millis(5);

/// A process that runs tasks from a Redis queue: Python's `rq worker` / `celery worker`.
///
/// Each worker is a consumer of the queue's consumer group, named
/// `<host>-<pid>-<random>` (unique per start). It runs at most
/// [`max_workers`](RedisWorkerBuilder::max_workers) tasks at once, on threads or, with
/// [`processes`](RedisWorkerBuilder::processes), in a [`ProcessPoolExecutor`](crate::ProcessPoolExecutor)
/// so that a task that crashes, leaks or hangs past its time limit is killed without
/// taking the worker down.
///
/// A task's lease is renewed while it runs, so a task longer than the lease is never handed
/// to a second worker; a worker that dies stops renewing and its tasks are reclaimed by the
/// others about one lease later.
///
/// # Examples
///
/// ```no_run
/// use concurrent_futures::redis::{RedisWorker, Tasks};
///
/// fn hash(s: String) -> u64 { s.bytes().map(u64::from).sum() }
///
/// let worker = RedisWorker::builder("redis://127.0.0.1/", Tasks::new().add("hash/v1", hash))
///     .spawn()?; // in background threads of this process
/// println!("worker {} is running", worker.name());
/// worker.stop(); // finishes what it runs, then leaves
/// worker.join();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RedisWorker {
    worker: Arc<Worker>,
    threads: Vec<JoinHandle<()>>,
}

/// What a worker shares between its threads.
struct Worker {
    cfg: Config,
    tasks: Tasks,
    keys: Keys,
    name: String,
    /// This machine's name, read once (the heartbeat reports it).
    host: String,
    scripts: Scripts,
    redis: ::redis::Client,
    running: Mutex<HashMap<String, Running>>,
    /// Signalled when a slot frees.
    freed: Condvar,
    stop: AtomicBool,
    /// `run()` stops on SIGTERM and SIGINT.
    signals: bool,
    /// Set by the finisher when it has nothing left: the keeper may leave.
    drained: AtomicBool,
    tx: Sender<Msg>,
    /// The connection answers go through (the finisher's, or a task thread's when the
    /// worker is otherwise idle).
    answers: Mutex<Link>,
    exec: Exec,
    runs: AtomicU64,
    completed: AtomicU64,
    /// Thread mode: tasks taken over from a silent worker wait to be run one at a time,
    /// so this worker takes no new entries until they have (see [`Worker::reclaim`]).
    isolating: AtomicBool,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("namespace", &self.cfg.namespace)
            .finish_non_exhaustive()
    }
}

enum Exec {
    Threads(ThreadPoolExecutor),
    #[cfg(all(unix, feature = "process"))]
    Processes(crate::process::ProcessPoolExecutor),
}

/// A task this worker holds.
struct Running {
    entry: TaskEntry,
    /// The delivery count this worker holds the entry at: the fence of its reply.
    attempt: u64,
    /// The run whose outcome counts (0 while waiting to retry).
    run: u64,
    /// The thread-mode time limit of the current run.
    deadline: Option<Instant>,
    retry_at: Option<Instant>,
    retries_done: u32,
    /// When this worker took it (for the log of its end).
    taken: Instant,
    /// Someone asked to kill it (`RedisExecutor::kill`): the finisher answers it cancelled.
    killed: bool,
    /// The process pool's futures of the current run, to kill it with.
    #[cfg_attr(not(all(unix, feature = "process")), allow(dead_code))]
    pool_ids: Vec<usize>,
}

enum Msg {
    /// A run ended.
    Done {
        id: String,
        run: u64,
        outcome: Outcome,
    },
    /// An entry to answer without running it (malformed, or delivered too often).
    Final(Final),
}

/// A reply to send through the `finish` script.
struct Final {
    id: String,
    attempt: u64,
    route: Option<Route>,
    outcome: Outcome,
    ttl: Duration,
    /// The dead letter's fields, if the entry is dead-lettered.
    dead: Option<Vec<(String, String)>>,
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

impl RedisWorker {
    /// Starts building a worker for the Redis at `url` that runs the functions in `tasks`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use concurrent_futures::redis::{RedisWorker, Tasks};
    /// fn f(x: u8) -> u8 { x }
    /// RedisWorker::builder("redis://10.0.0.5/", Tasks::new().add("f/v1", f)).max_workers(8).run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(url: &str, tasks: Tasks) -> RedisWorkerBuilder {
        RedisWorkerBuilder {
            url: url.to_owned(),
            tasks,
            tls: super::Tls::default(),
            cfg: Config {
                namespace: "cf".into(),
                concurrency: thread::available_parallelism().map_or(1, usize::from),
                lease: Duration::from_secs(30),
                max_payload: 16 << 20,
                processes: false,
                dead_ttl: Duration::from_secs(7 * 24 * 3600),
                queue_ttl: Duration::from_secs(7 * 24 * 3600),
                outage_limit: Duration::from_secs(60),
                setup_timeout: super::SETUP_TIMEOUT,
                sample_every: wire::SAMPLE_EVERY,
            },
        }
    }

    /// This worker's consumer name in the queue's group: `<host>-<pid>-<random>`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// let worker = RedisWorker::builder("redis://127.0.0.1/", Tasks::new()).spawn()?;
    /// assert!(worker.name().contains(&std::process::id().to_string()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.worker.name
    }

    /// How many tasks this worker has answered (results, errors and refusals).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// let worker = RedisWorker::builder("redis://127.0.0.1/", Tasks::new()).spawn()?;
    /// assert_eq!(worker.completed(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn completed(&self) -> u64 {
        self.worker.completed.load(Ordering::Relaxed)
    }

    /// Stops taking new tasks; those running finish and are answered. Returns at once;
    /// [`join`](Self::join) waits.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// let worker = RedisWorker::builder("redis://127.0.0.1/", Tasks::new()).spawn()?;
    /// worker.stop();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stop(&self) {
        self.worker.stop.store(true, Ordering::SeqCst);
        self.worker.freed.notify_all();
    }

    /// Waits until the worker has stopped (after [`stop`](Self::stop), or a signal for
    /// [`run`](RedisWorkerBuilder::run)) and has answered every task it held.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// let worker = RedisWorker::builder("redis://127.0.0.1/", Tasks::new()).spawn()?;
    /// worker.stop();
    /// worker.join();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(mut self) {
        self.join_threads();
    }

    fn join_threads(&mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for RedisWorker {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop();
            self.join_threads();
        }
    }
}

impl Worker {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || (self.signals && SIGNALLED.load(Ordering::SeqCst))
    }

    fn free_slots(&self) -> usize {
        self.cfg
            .concurrency
            .saturating_sub(self.running.lock().len())
    }

    /// Whether a task that kills its worker would take the others with it: tasks run on
    /// threads of this process, not in processes of their own.
    fn shares_fate(&self) -> bool {
        matches!(self.exec, Exec::Threads(_))
    }

    /// Whether the reader must take no new entries now: every slot is busy, or a taken-over
    /// task runs (or waits to run) alone.
    fn full(&self, running: &HashMap<String, Running>) -> bool {
        running.len() >= self.cfg.concurrency
            || (self.shares_fate()
                && (self.isolating.load(Ordering::SeqCst)
                    || running.values().any(|r| r.attempt > 1)))
    }

    fn link(&self, what: &'static str, read_timeout: Duration) -> Link {
        Link::new(self.redis.clone(), what, read_timeout)
    }

    /// This worker's hash of running tasks (task id → start of the delivery, ms).
    fn running_key(&self) -> String {
        format!("{}{}", self.keys.running_prefix, self.name)
    }

    fn running_ttl(&self) -> u64 {
        wire::millis(
            self.cfg
                .lease
                .saturating_mul(3)
                .max(Duration::from_secs(60)),
        )
    }

    fn worker_key(&self) -> String {
        format!("{{{}}}:worker:{}", self.keys.ns, self.name)
    }
}

impl Final {
    /// A message that only wakes the finisher.
    fn wake() -> Final {
        Final {
            id: String::new(),
            attempt: 0,
            route: None,
            outcome: Err(TaskError::TimedOut),
            ttl: Duration::ZERO,
            dead: None,
        }
    }
}
