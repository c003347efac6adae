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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ::redis::Value;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};

use super::conn::{self, Link, Patience};
use super::periodic;
use super::tasks::{Done, Outcome, Tasks};
use super::wire::{self, Keys, RawEntry, Route, Scripts, TaskEntry, GROUP};
use super::SetupError;
use crate::ThreadPoolExecutor;

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

/// Builds a worker; from [`RedisWorker::builder`].
///
/// # Examples
///
/// ```no_run
/// use concurrent_futures::redis::{RedisWorker, Tasks};
/// use std::time::Duration;
///
/// fn double(x: u64) -> u64 { x * 2 }
///
/// RedisWorker::builder("redis://127.0.0.1/", Tasks::new().add("double/v1", double))
///     .concurrency(8)
///     .lease(Duration::from_secs(30))
///     .run()?; // until SIGTERM or Ctrl-C
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until run() or spawn() is called"]
pub struct RedisWorkerBuilder {
    url: String,
    tasks: Tasks,
    cfg: Config,
    pub(super) tls: super::Tls,
}

#[derive(Debug, Clone)]
struct Config {
    namespace: String,
    concurrency: usize,
    lease: Duration,
    max_payload: usize,
    #[cfg_attr(not(all(unix, feature = "process")), allow(dead_code))]
    processes: bool,
    dead_ttl: Duration,
    queue_ttl: Duration,
    outage_limit: Duration,
    setup_timeout: Duration,
}

/// A process that runs tasks from a Redis queue: Python's `rq worker` / `celery worker`.
///
/// Each worker is a consumer of the queue's consumer group, named
/// `<host>-<pid>-<random>` (unique per start). It runs at most
/// [`concurrency`](RedisWorkerBuilder::concurrency) tasks at once, on threads or, with
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
    Processes(crate::ProcessPoolExecutor),
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

#[cfg(unix)]
extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    SIGNALLED.store(true, Ordering::SeqCst);
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: `on_signal` is an `extern "C" fn(c_int)` that only stores to an atomic,
        // which is async-signal-safe; `signal` has no other precondition.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

#[cfg(not(unix))]
fn install_signal_handlers() {}

impl RedisWorkerBuilder {
    /// The key prefix shared with the clients (default `"cf"`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// RedisWorker::builder("redis://127.0.0.1/", Tasks::new()).namespace("thumbs").run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.cfg.namespace = namespace.to_owned();
        self
    }

    /// How many tasks run at once (default: the number of CPUs). Cheap I/O-bound tasks
    /// want more; each slot is a thread, or with [`processes`](Self::processes) a process.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// RedisWorker::builder("redis://127.0.0.1/", Tasks::new()).concurrency(32).run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn concurrency(mut self, n: usize) -> Self {
        self.cfg.concurrency = n.max(1);
        self
    }

    /// How long a task stays with this worker without a renewal (default 30 s, at least
    /// 300 ms). The worker renews every third of it; if the worker dies, its tasks go to
    /// other workers about one lease later. Shorter leases recover faster and cost more
    /// renewals.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// RedisWorker::builder("redis://127.0.0.1/", Tasks::new()).lease(std::time::Duration::from_secs(5)).run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.cfg.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// The largest queue entry this worker decodes (default 16 MiB); larger ones are
    /// dead-lettered unread.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// RedisWorker::builder("redis://127.0.0.1/", Tasks::new()).max_payload_bytes(1 << 20).run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.cfg.max_payload = bytes;
        self
    }

    /// Runs tasks in a [`ProcessPoolExecutor`](crate::ProcessPoolExecutor) of
    /// `concurrency` processes instead of threads: a task that crashes its process fails
    /// with [`TaskError::WorkerDied`](crate::TaskError::WorkerDied) and one past its time
    /// limit is killed, while the worker carries on. The program must call
    /// [`init`](crate::init) first thing in `main`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// concurrent_futures::init();
    /// RedisWorker::builder("redis://127.0.0.1/", Tasks::new()).processes(true).run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(all(unix, feature = "process"))]
    #[cfg_attr(docsrs, doc(cfg(all(unix, feature = "process"))))]
    pub fn processes(mut self, yes: bool) -> Self {
        self.cfg.processes = yes;
        self
    }

    /// How long a worker that is stopping keeps trying to give its last answers to a Redis
    /// it cannot reach (default 60 s). Past this it drops them and exits, so stopping or
    /// dropping a worker always ends; the tasks whose answers were dropped run again on
    /// another worker once their lease runs out (delivery is at least once). A worker that
    /// is not stopping keeps its answers, and keeps trying, until Redis is back.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// RedisWorker::builder("redis://127.0.0.1/", Tasks::new())
    ///     .outage_limit(std::time::Duration::from_secs(10))
    ///     .run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn outage_limit(mut self, limit: Duration) -> Self {
        self.cfg.outage_limit = limit;
        self
    }

    /// How long [`spawn`](Self::spawn) and [`run`](Self::run) wait for Redis to connect
    /// and answer before they fail with [`SetupError::Connect`] (default
    /// [`SETUP_TIMEOUT`](super::SETUP_TIMEOUT), 10 s).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// RedisWorker::builder("redis://127.0.0.1/", Tasks::new())
    ///     .setup_timeout(std::time::Duration::from_secs(3))
    ///     .run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn setup_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.setup_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// How long dead letters are kept (default 7 days).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// RedisWorker::builder("redis://127.0.0.1/", Tasks::new())
    ///     .dead_letter_ttl(std::time::Duration::from_secs(86400))
    ///     .run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dead_letter_ttl(mut self, ttl: Duration) -> Self {
        self.cfg.dead_ttl = ttl;
        self
    }

    /// Starts the worker in background threads of this process.
    ///
    /// # Errors
    ///
    /// [`SetupError`] if the URL or namespace is invalid, Redis cannot be reached, or the
    /// process pool cannot start.
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
    pub fn spawn(self) -> Result<RedisWorker, SetupError> {
        self.start(false)
    }

    /// Runs the worker on this thread until SIGTERM or SIGINT (Ctrl-C), then stops taking
    /// tasks, finishes those it runs, and returns. A worker killed instead (SIGKILL, a
    /// machine lost) loses nothing: its tasks go to other workers after their lease.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// fn f(x: u8) -> u8 { x }
    /// RedisWorker::builder("redis://127.0.0.1/", Tasks::new().add("f/v1", f)).run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(self) -> Result<(), SetupError> {
        install_signal_handlers();
        let worker = self.start(true)?;
        log::info!(target: "concurrent_futures::redis", "worker {} started", worker.name());
        worker.join();
        Ok(())
    }

    fn start(self, signals: bool) -> Result<RedisWorker, SetupError> {
        let (redis, address) = super::open(&self.url, &self.cfg.namespace, &self.tls)?;
        let keys = Keys::new(&self.cfg.namespace);
        let (mut setup, started) =
            super::setup_connection(&redis, &address, self.cfg.setup_timeout)?;
        let failed = SetupError::connect(&address, started);
        super::ensure_group(&mut setup, &keys).map_err(&failed)?;
        let scripts = Scripts::new();
        scripts.load(&mut setup).map_err(&failed)?;
        drop(setup);
        let exec = self.executor()?;
        let host = wire::hostname();
        let name = format!(
            "{host}-{}-{:08x}",
            std::process::id(),
            wire::random() as u32
        );
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut answers = Link::new(
            redis.clone(),
            "RedisWorker finisher",
            Duration::from_secs(30),
        );
        answers
            .once(|con| ::redis::cmd("PING").query::<()>(con))
            .map_err(&failed)?;
        let worker = Arc::new(Worker {
            answers: Mutex::new(answers),
            cfg: self.cfg,
            tasks: self.tasks,
            keys,
            name,
            host,
            scripts,
            redis,
            running: Mutex::new(HashMap::new()),
            freed: Condvar::new(),
            stop: AtomicBool::new(false),
            signals,
            drained: AtomicBool::new(false),
            tx,
            exec,
            runs: AtomicU64::new(1),
            completed: AtomicU64::new(0),
            isolating: AtomicBool::new(false),
        });
        let mut threads = Vec::new();
        type Body = Box<dyn FnOnce() + Send>;
        let bodies: [(&str, Body); 3] = [
            ("RedisWorker-reader", {
                let w = worker.clone();
                Box::new(move || w.read_loop())
            }),
            ("RedisWorker-keeper", {
                let w = worker.clone();
                Box::new(move || w.keep_loop())
            }),
            ("RedisWorker-finisher", {
                let w = worker.clone();
                Box::new(move || w.finish_loop(&rx))
            }),
        ];
        for (name, body) in bodies {
            match thread::Builder::new().name(name.into()).spawn(body) {
                Ok(t) => threads.push(t),
                Err(e) => {
                    worker.stop.store(true, Ordering::SeqCst);
                    return Err(SetupError::Config(format!("cannot start a thread: {e}")));
                }
            }
        }
        Ok(RedisWorker { worker, threads })
    }

    fn executor(&self) -> Result<Exec, SetupError> {
        #[cfg(all(unix, feature = "process"))]
        if self.cfg.processes {
            return crate::ProcessPoolExecutor::builder()
                .max_workers(self.cfg.concurrency)
                .build()
                .map(Exec::Processes)
                .map_err(|e| SetupError::Config(format!("cannot start the process pool: {e}")));
        }
        // Twice the slots: a thread whose task ran past its time limit is reported and its
        // slot reused, but the thread itself runs on until the task returns.
        ThreadPoolExecutor::builder()
            .max_workers(self.cfg.concurrency * 2)
            .thread_name_prefix("RedisWorker-task")
            .build()
            .map(Exec::Threads)
            .map_err(|e| SetupError::Config(format!("cannot start the task threads: {e}")))
    }
}

impl RedisWorker {
    /// Starts building a worker for the Redis at `url` that runs the functions in `tasks`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use concurrent_futures::redis::{RedisWorker, Tasks};
    /// fn f(x: u8) -> u8 { x }
    /// RedisWorker::builder("redis://10.0.0.5/", Tasks::new().add("f/v1", f)).concurrency(8).run()?;
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

    /// Takes new entries while there are free slots, until stopped.
    fn read_loop(self: &Arc<Self>) {
        let mut link = self.link("RedisWorker reader", BLOCK + Duration::from_secs(10));
        // Task ids whose start is not recorded yet.
        let mut marks: Vec<String> = Vec::new();
        while !self.stopping() {
            let free = {
                let mut running = self.running.lock();
                while self.full(&running) && !self.stopping() {
                    self.freed
                        .wait_for(&mut running, Duration::from_millis(500));
                }
                self.cfg.concurrency.saturating_sub(running.len())
            };
            if self.stopping() {
                break;
            }
            let stopping = || self.stopping();
            let reply = link.retry(&self.scripts, &stopping, |con| {
                let mut pipe = ::redis::pipe();
                pipe.ignore_errors();
                // When the last batch started, in the round trip of the next read: it runs
                // before the read blocks.
                for cmd in self.start_marks(&marks) {
                    pipe.add_command(cmd).ignore();
                }
                pipe.cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(&self.name)
                    .arg("COUNT")
                    .arg(free)
                    .arg("BLOCK")
                    .arg(wire::millis(BLOCK))
                    .arg("STREAMS")
                    .arg(&self.keys.queue)
                    .arg(">");
                let read = pipe.query::<Vec<Value>>(con)?.pop().unwrap_or(Value::Nil);
                match read {
                    // The queue expired or was deleted: recreate it and read again.
                    Value::ServerError(e) if e.code() == "NOGROUP" => {
                        super::ensure_group(con, &self.keys)?;
                        Ok(Value::Nil)
                    }
                    Value::ServerError(e) => Err(e.into()),
                    other => Ok(other),
                }
            });
            let Some(reply) = reply else { break };
            marks.clear();
            let entries = wire::read_reply(&reply);
            for raw in &entries {
                self.take(raw, 1);
            }
            marks.extend(
                entries
                    .iter()
                    .filter_map(|raw| raw.text("id"))
                    .filter(|id| super::id::TaskId::checked(id).is_some())
                    .map(str::to_owned),
            );
            // A full worker's reader waits for a free slot before it reads again: the
            // marks go now then, in a round trip of their own.
            if !marks.is_empty() && self.full(&self.running.lock()) {
                self.send_marks(&mut link, &marks);
                marks.clear();
            }
        }
        self.freed.notify_all();
        let _ = self.tx.send(Msg::Final(Final::wake()));
    }

    /// Records that the tasks `ids` started now (for `status`): one `HSET` into the
    /// running hash, which then expires with the queue; `None` for no ids.
    fn start_marks(&self, ids: &[impl AsRef<str>]) -> Vec<::redis::Cmd> {
        if ids.is_empty() {
            return Vec::new();
        }
        let now = wire::now_ms().to_string();
        let mut hset = ::redis::cmd("HSET");
        hset.arg(self.running_key());
        for id in ids {
            hset.arg(id.as_ref()).arg(&now);
        }
        // The hash's TTL, with every batch: emptied by the answers, the key goes, and the
        // next `HSET` makes it again without one. A dead worker's hash expires.
        let mut expire = ::redis::cmd("PEXPIRE");
        expire.arg(self.running_key()).arg(self.running_ttl());
        vec![hset, expire]
    }

    /// Sends `start_marks` in a round trip of their own (best effort).
    fn send_marks(&self, link: &mut Link, ids: &[impl AsRef<str>]) {
        let cmds = self.start_marks(ids);
        if !cmds.is_empty() {
            let _ = link.once(|con| {
                let mut pipe = ::redis::pipe();
                pipe.ignore_errors();
                for cmd in cmds {
                    pipe.add_command(cmd).ignore();
                }
                pipe.query::<()>(con)
            });
        }
    }

    /// Starts an entry this worker now holds at delivery `attempt`, or answers it at once
    /// if it is malformed.
    fn take(self: &Arc<Self>, raw: &RawEntry, attempt: u64) {
        let entry = match wire::task_entry(raw, self.cfg.max_payload) {
            Ok(entry) => entry,
            Err((route, why)) => {
                log::warn!(target: "concurrent_futures::redis", "dead-lettering entry {}: {why}", raw.id);
                let _ = self.tx.send(Msg::Final(Final {
                    id: raw.id.clone(),
                    attempt,
                    route,
                    dead: Some(dead_fields(raw, "rejected", &why, &self.name)),
                    outcome: Outcome::Rejected(why),
                    ttl: Duration::from_secs(24 * 3600),
                }));
                return;
            }
        };
        if attempt > u64::from(entry.tries) {
            let why = format!(
                "delivered {} times (max_deliveries {}); no worker finished it",
                attempt - 1,
                entry.tries
            );
            let _ = self.tx.send(Msg::Final(Final {
                id: raw.id.clone(),
                attempt,
                dead: Some(dead_fields(raw, "lost", &why, &self.name)),
                route: Some(entry.route),
                outcome: Outcome::Lost(why),
                ttl: entry.ttl,
            }));
            return;
        }
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let deadline = self.thread_deadline(&entry);
        {
            let mut running = self.running.lock();
            if let Some(r) = running.get_mut(&raw.id) {
                // Reclaimed by this very worker after its renewals failed (Redis was away
                // for a lease): the run goes on and answers at the new delivery count.
                r.attempt = attempt;
                return;
            }
            running.insert(
                raw.id.clone(),
                Running {
                    deadline,
                    entry: entry.clone(),
                    attempt,
                    run,
                    retry_at: None,
                    retries_done: 0,
                },
            );
        }
        if deadline.is_some() {
            // The finisher may be asleep until a later timer: it must see this one.
            let _ = self.tx.send(Msg::Final(Final::wake()));
        }
        self.dispatch(&raw.id, run, &entry);
    }

    fn thread_deadline(&self, entry: &TaskEntry) -> Option<Instant> {
        match self.exec {
            Exec::Threads(_) => entry.limit.and_then(|l| Instant::now().checked_add(l)),
            #[cfg(all(unix, feature = "process"))]
            Exec::Processes(_) => None, // the process pool enforces it, killing the process
        }
    }

    /// Runs one try of a task; its outcome comes back to the finisher as `Msg::Done`.
    fn dispatch(self: &Arc<Self>, id: &str, run: u64, entry: &TaskEntry) {
        let tx = self.tx.clone();
        let key = id.to_owned();
        let worker = Arc::downgrade(self);
        let done: Done = Box::new(move |outcome| {
            // The only task of an otherwise idle worker answers from this thread: waking
            // the finisher would add a thread wake-up to the task's round trip. Under load
            // the finisher batches the answers instead.
            if let Some(w) = worker.upgrade() {
                if w.running.lock().len() == 1 {
                    if let Some(mut link) = w.answers.try_lock() {
                        if link.is_connected() {
                            if let Some(f) = w.outcome(&key, run, outcome) {
                                w.answer(&mut link, &[f]);
                            }
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(Msg::Done {
                id: key,
                run,
                outcome,
            });
        });
        let Some(f) = self.tasks.get(&entry.name).cloned() else {
            return done(Outcome::Rejected(format!(
                "no task named {:?} is registered on worker {}",
                entry.name, self.name
            )));
        };
        match &self.exec {
            Exec::Threads(pool) => {
                let args = entry.args.clone();
                let chunk = entry.chunk;
                let refused = pool.submit(move || {
                    done(if chunk {
                        f.call_chunk(&args)
                    } else {
                        f.call(&args)
                    });
                });
                if let Err(e) = refused {
                    (e.into_inner())(); // the pool is shutting down: run it here
                }
            }
            #[cfg(all(unix, feature = "process"))]
            Exec::Processes(pool) => f.submit(pool, &entry.args, entry.chunk, entry.limit, done),
        }
    }

    /// Collects outcomes, applies time limits and retries, and answers, until stopped and
    /// empty.
    fn finish_loop(self: &Arc<Self>, rx: &Receiver<Msg>) {
        loop {
            let next = self.next_timer();
            let first = match next {
                Some(at) => rx.recv_deadline(at.min(Instant::now() + Duration::from_secs(1))),
                None => rx.recv_timeout(Duration::from_secs(1)),
            };
            let mut msgs = Vec::new();
            match first {
                Ok(m) => msgs.push(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            msgs.extend(rx.try_iter().take(1024));
            let mut finals = Vec::new();
            for msg in msgs {
                match msg {
                    Msg::Final(f) if f.id.is_empty() => {} // a wake-up
                    Msg::Final(f) => finals.push(f),
                    Msg::Done { id, run, outcome } => {
                        if let Some(f) = self.outcome(&id, run, outcome) {
                            finals.push(f);
                        }
                    }
                }
            }
            finals.extend(self.timers());
            if !finals.is_empty() {
                self.answer(&mut self.answers.lock(), &finals);
            }
            if self.stopping() && self.running.lock().is_empty() && rx.is_empty() {
                break;
            }
        }
        self.drained.store(true, Ordering::SeqCst);
    }

    /// The next time limit or retry time among the running tasks.
    fn next_timer(&self) -> Option<Instant> {
        self.running
            .lock()
            .values()
            .filter_map(|r| match (r.run, r.deadline, r.retry_at) {
                (ANSWERED, _, _) => None,
                (0, _, at) => at,
                (_, at, _) => at,
            })
            .min()
    }

    /// Time limits that passed (thread mode) and retries that are due.
    fn timers(self: &Arc<Self>) -> Vec<Final> {
        let now = Instant::now();
        let mut out = Vec::new();
        let (expired, due): (Vec<_>, Vec<_>) = {
            let running = self.running.lock();
            let expired = running
                .iter()
                .filter(|(_, r)| {
                    r.run != 0 && r.run != ANSWERED && r.deadline.is_some_and(|d| d <= now)
                })
                .map(|(id, r)| (id.clone(), r.run))
                .collect();
            let due = running
                .iter()
                .filter(|(_, r)| r.run == 0 && r.retry_at.is_some_and(|d| d <= now))
                .map(|(id, _)| id.clone())
                .collect();
            (expired, due)
        };
        for (id, run) in expired {
            out.extend(self.outcome(&id, run, Outcome::TimedOut));
        }
        for id in due {
            let run = self.runs.fetch_add(1, Ordering::Relaxed);
            let entry = {
                let mut running = self.running.lock();
                let Some(r) = running.get_mut(&id) else {
                    continue;
                };
                r.run = run;
                r.retry_at = None;
                r.deadline = self.thread_deadline(&r.entry);
                r.entry.clone()
            };
            self.dispatch(&id, run, &entry);
        }
        out
    }

    /// What to do with a run's outcome: nothing (a stale run), schedule a retry, or answer.
    fn outcome(&self, id: &str, run: u64, outcome: Outcome) -> Option<Final> {
        let mut running = self.running.lock();
        let r = running.get_mut(id)?;
        if r.run != run {
            return None; // a run that timed out already, or one replaced by a retry
        }
        if outcome.retryable() && r.retries_done < r.entry.retries {
            let pause = r.entry.backoff.saturating_mul(1 << r.retries_done.min(16));
            r.retries_done += 1;
            r.run = 0;
            r.deadline = None;
            r.retry_at = Some(Instant::now() + pause.min(Duration::from_secs(3600)));
            log::info!(target: "concurrent_futures::redis", "task {id} failed ({}); try {} in {pause:?}", outcome.status(), r.retries_done + 1);
            return None;
        }
        r.run = ANSWERED; // later outcomes of this entry are stale
        let dead = matches!(outcome, Outcome::Rejected(_)).then(|| {
            vec![
                ("entry".to_owned(), id.to_owned()),
                ("fn".to_owned(), r.entry.name.clone()),
                ("why".to_owned(), "rejected".to_owned()),
                ("msg".to_owned(), outcome.body().to_owned()),
                ("w".to_owned(), self.name.clone()),
                ("at".to_owned(), wire::now_ms().to_string()),
            ]
        });
        Some(Final {
            id: id.to_owned(),
            attempt: r.attempt,
            route: Some(r.entry.route.clone()),
            outcome,
            ttl: r.entry.ttl,
            dead,
        })
    }

    /// Sends the answers through the `finish` script, in one pipeline, then frees their
    /// slots.
    fn answer(&self, link: &mut Link, finals: &[Final]) {
        // Retried until Redis can be reached: a worker that stops answering would let its
        // tasks run again elsewhere, which is allowed, but never drops an answer it can give.
        // An answer Redis refuses for now (`LOADING` after a restart, a failover's
        // `READONLY`) is sent again once Redis is ready. An answer Redis refuses for good (a
        // key of the namespace of the wrong type, say) is logged and dropped, never retried:
        // one bad key must not wedge every answer behind it.
        let mut todo: Vec<&Final> = finals.iter().collect();
        let mut patience = Patience::new("RedisWorker finisher");
        while !todo.is_empty() {
            let pipe = self.finish_pipeline(&todo);
            // Given up only by a worker that is stopping, once Redis has been out of reach
            // for `outage_limit`: stopping always ends.
            let failing = std::cell::Cell::new(None::<Instant>);
            let give_up = || {
                let since = failing.get().unwrap_or_else(Instant::now);
                failing.set(Some(since));
                self.stopping() && since.elapsed() >= self.cfg.outage_limit
            };
            let applied = link.retry(&self.scripts, &give_up, |con| {
                let mut reply: Vec<Value> = pipe.query(con)?;
                if matches!(reply.first(), Some(Value::ServerError(e)) if e.code() == "NOSCRIPT") {
                    // Redis restarted and lost its scripts: load them, then send again.
                    self.scripts.load(con)?;
                    reply = pipe.query(con)?;
                }
                Ok(wire::per_item(reply.first(), todo.len()))
            });
            let Some(applied) = applied else {
                log::warn!(target: "concurrent_futures::redis", "stopping: dropping {} answers that Redis could not take for {:?}; those tasks run again on another worker after their lease", todo.len(), self.cfg.outage_limit);
                let mut running = self.running.lock();
                for f in &todo {
                    if running.get(&f.id).is_some_and(|r| r.run == ANSWERED) {
                        running.remove(&f.id);
                    }
                }
                drop(running);
                self.freed.notify_all();
                return;
            };
            let mut again = Vec::new();
            let mut code = String::new();
            let mut running = self.running.lock();
            for (i, f) in todo.into_iter().enumerate() {
                if let Some(c) = conn::refused_for_now(applied.get(i)) {
                    code = c.to_owned();
                    again.push(f);
                    continue;
                }
                match applied.get(i) {
                    Some(Value::Int(0)) => {
                        log::info!(target: "concurrent_futures::redis", "the answer to {} was dropped: another worker holds it now", f.id);
                    }
                    Some(Value::Int(2)) => {
                        self.completed.fetch_add(1, Ordering::Relaxed);
                        log::warn!(target: "concurrent_futures::redis", "answered {}, which Redis no longer had (restarted without its data, or flushed)", f.id);
                    }
                    Some(Value::ServerError(e)) => {
                        log::error!(target: "concurrent_futures::redis", "Redis refused the answer to {}: {e:?}", f.id);
                    }
                    _ => {
                        self.completed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if running.get(&f.id).is_some_and(|r| r.run == ANSWERED) {
                    running.remove(&f.id);
                }
            }
            drop(running);
            self.freed.notify_all();
            if again.is_empty() {
                patience.done();
                break;
            }
            patience.wait(link, &code, again.len());
            todo = again;
        }
    }

    /// The `finish` script for each answer, in one pipeline whose commands may fail alone.
    fn finish_pipeline(&self, finals: &[&Final]) -> ::redis::Pipeline {
        let mut pipe = ::redis::pipe();
        pipe.ignore_errors();
        let mut inv = wire::evalsha(&self.scripts.finish, &[&self.keys.queue, &self.keys.dead]);
        inv.arg(GROUP)
            .arg(&self.name)
            .arg(wire::millis(self.cfg.dead_ttl))
            .arg(DEAD_MAX)
            .arg(self.keys.reply(""))
            .arg(wire::now_ms());
        for f in finals {
            let reply_key = f
                .route
                .as_ref()
                .map_or_else(|| self.keys.reply("-"), |r| self.keys.reply(&r.client));
            let mut flags = String::new();
            if f.route.is_some() {
                flags.push('r');
            }
            if f.dead.is_some() {
                flags.push('d');
            }
            // The FINISH script reads these by position: id, status, body, worker.
            let reply: Vec<(&str, &str)> = match &f.route {
                Some(route) => vec![
                    ("id", &route.task),
                    ("s", f.outcome.status()),
                    ("r", f.outcome.body()),
                    ("w", &self.name),
                ],
                None => Vec::new(),
            };
            let task = f.route.as_ref().map_or("-", |r| &r.task);
            inv.arg(&f.id)
                .arg(f.attempt)
                .arg(wire::millis(f.ttl))
                .arg(flags)
                .arg(reply_key)
                .arg(self.keys.ids(task))
                .arg(self.keys.result(task))
                .arg(self.keys.watch(task))
                .arg(task)
                .arg(reply.len() * 2);
            for (k, v) in &reply {
                inv.arg(*k).arg(*v);
            }
            inv.arg(f.dead.as_ref().map_or(0, |d| d.len() * 2));
            for (k, v) in f.dead.iter().flatten() {
                inv.arg(k).arg(v);
            }
        }
        pipe.add_command(inv);
        // Out of the running hash, all of the batch in one command (after the answers, so
        // the replies' positions stay those of the answers).
        let ids: Vec<&str> = finals
            .iter()
            .filter_map(|f| f.route.as_ref().map(|r| r.task.as_str()))
            .collect();
        if !ids.is_empty() {
            pipe.cmd("HDEL").arg(self.running_key()).arg(&ids).ignore();
        }
        pipe
    }

    /// Renews leases, sends heartbeats and reclaims abandoned entries, every third of a
    /// lease, until the finisher is done.
    fn keep_loop(self: &Arc<Self>) {
        let mut link = self.link("RedisWorker keeper", Duration::from_secs(30));
        let tick = self.cfg.lease / 3;
        let mut ticks = 0u64;
        let mut next = Instant::now();
        let mut promoted = Instant::now();
        while !self.drained.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= promoted + PROMOTE_EVERY && !self.stopping() {
                self.promote(&mut link);
                self.fire_periodic(&mut link);
                promoted = now;
            }
            if now < next {
                let mut running = self.running.lock();
                self.freed
                    .wait_for(&mut running, (next - now).min(Duration::from_millis(200)));
                continue;
            }
            next = now + tick;
            let give_up = || self.drained.load(Ordering::SeqCst);
            self.renew(&mut link, &give_up);
            self.heartbeat(&mut link);
            self.prune_running(&mut link);
            if !self.stopping() {
                self.reclaim(&mut link, &give_up);
            }
            if ticks % 30 == 0 {
                let idle = wire::millis(
                    self.cfg
                        .lease
                        .saturating_mul(10)
                        .max(Duration::from_secs(60)),
                );
                let _ = link.once(|con| {
                    self.scripts
                        .prune
                        .key(&self.keys.queue)
                        .arg(GROUP)
                        .arg(idle)
                        .invoke::<i64>(con)
                });
            }
            ticks += 1;
        }
        // Leaving: forget this consumer (if it holds nothing) and its heartbeat.
        let _ = link.once(|con| {
            self.scripts
                .prune
                .key(&self.keys.queue)
                .arg(GROUP)
                .arg(u64::MAX)
                .arg(&self.name)
                .invoke::<i64>(con)?;
            ::redis::pipe()
                .cmd("ZREM")
                .arg(&self.keys.workers)
                .arg(&self.name)
                .cmd("DEL")
                .arg(self.worker_key())
                .query::<()>(con)
        });
    }

    /// Moves the scheduled tasks that are due into the queue (every worker does, every
    /// `PROMOTE_EVERY`; the script moves each task once however many run it).
    fn promote(&self, link: &mut Link) {
        loop {
            let moved = link.once(|con| {
                self.scripts
                    .promote
                    .key(&self.keys.scheduled)
                    .key(&self.keys.payloads)
                    .key(&self.keys.queue)
                    .arg(wire::now_ms())
                    .arg(PROMOTE_BATCH)
                    .arg(self.keys.ids_prefix())
                    .invoke::<u64>(con)
            });
            match moved {
                Ok(n) if n >= PROMOTE_BATCH => continue, // more may be due
                Ok(_) => return,
                Err(e) => {
                    log::debug!(target: "concurrent_futures::redis", "cannot promote scheduled tasks: {e}");
                    return;
                }
            }
        }
    }

    /// Fires the ticks of periodic tasks that are due (every worker does, every
    /// `PROMOTE_EVERY`; the `FIRE` script lets exactly one fire each tick).
    fn fire_periodic(&self, link: &mut Link) {
        let now = wire::now_ms();
        let due = link.once(|con| {
            ::redis::cmd("ZRANGEBYSCORE")
                .arg(&self.keys.periodic_due)
                .arg("-inf")
                .arg(now)
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(100)
                .query::<Value>(con)
        });
        let Ok(due) = due else { return };
        let items = wire::array(&due).unwrap_or(&[]);
        for pair in items.chunks(2) {
            let (Some(name), Some(tick)) = (
                pair.first().and_then(wire::text),
                pair.get(1)
                    .and_then(wire::text)
                    .and_then(|t| t.parse::<f64>().ok()),
            ) else {
                continue;
            };
            if periodic::check_name(name).is_err() || !(0.0..1e15).contains(&tick) {
                continue;
            }
            let tick = tick as u64;
            // Its size first: a value written by someone else is read only if it is small.
            let spec = link.once(|con| {
                let len: u64 = ::redis::cmd("HSTRLEN")
                    .arg(&self.keys.periodic)
                    .arg(name)
                    .query(con)?;
                if len == 0 || len > periodic::MAX_SPEC {
                    return Ok(None);
                }
                ::redis::cmd("HGET")
                    .arg(&self.keys.periodic)
                    .arg(name)
                    .query::<Option<Vec<u8>>>(con)
            });
            let spec = match spec {
                Ok(Some(bytes)) => periodic::Spec::read(&bytes),
                Ok(None) => None,
                Err(_) => return,
            };
            let Some(spec) = spec else {
                // Removed, or unreadable: it leaves the due set (a new `schedule` puts it
                // back, with its spec, in one step).
                log::warn!(target: "concurrent_futures::redis", "periodic task {name:?} has no valid schedule: removed from the due set");
                let _ = link.once(|con| {
                    ::redis::cmd("ZREM")
                        .arg(&self.keys.periodic_due)
                        .arg(name)
                        .query::<()>(con)
                });
                continue;
            };
            let now = wire::now_ms();
            let Some(next) = spec.schedule.next_after(tick, now.max(tick)) else {
                continue;
            };
            let run = match spec.schedule.missed_policy() {
                periodic::Missed::Skip => now.saturating_sub(tick) <= periodic::SKIP_GRACE_MS,
                _ => true,
            };
            let task = format!("{name}@{tick}");
            let fired = link.once(|con| {
                let mut cmd = wire::evalsha(
                    &self.scripts.fire,
                    &[
                        &self.keys.periodic_due,
                        &self.keys.queue,
                        &self.keys.ids(&task),
                        &self.keys.periodic,
                    ],
                );
                cmd.arg(name)
                    .arg(tick)
                    .arg(next)
                    .arg(if run { "1" } else { "0" })
                    .arg(&task)
                    .arg(wire::millis(self.cfg.queue_ttl));
                for (k, v) in &spec.fields {
                    cmd.arg(k).arg(v);
                }
                cmd.arg("id").arg(&task);
                cmd.query::<i64>(con)
            });
            match fired {
                Ok(1) if run => log::debug!(target: "concurrent_futures::redis", "fired {task}"),
                Ok(1) => {
                    log::info!(target: "concurrent_futures::redis", "skipped tick {task}: found {} ms late (Missed::Skip)", now.saturating_sub(tick))
                }
                Ok(_) => {}
                Err(e) if e.code() == Some("NOSCRIPT") => {
                    let _ = link.once(|con| self.scripts.load(con));
                    return;
                }
                Err(e) => {
                    log::debug!(target: "concurrent_futures::redis", "cannot fire {task}: {e}");
                    return;
                }
            }
        }
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

    /// Removes from this worker's running hash the tasks it no longer runs: a start mark
    /// can reach Redis after the task's answer (they travel on different connections).
    fn prune_running(&self, link: &mut Link) {
        let Ok(listed) = link.once(|con| {
            ::redis::cmd("HKEYS")
                .arg(self.running_key())
                .query::<Vec<String>>(con)
        }) else {
            return;
        };
        let stale: Vec<String> = {
            let running = self.running.lock();
            listed
                .into_iter()
                .filter(|id| {
                    !running
                        .values()
                        .any(|r| r.run != ANSWERED && r.entry.route.task == *id)
                })
                .collect()
        };
        if !stale.is_empty() {
            let _ = link.once(|con| {
                ::redis::cmd("HDEL")
                    .arg(self.running_key())
                    .arg(&stale)
                    .query::<()>(con)
            });
        }
    }

    fn worker_key(&self) -> String {
        format!("{{{}}}:worker:{}", self.keys.ns, self.name)
    }

    fn renew(&self, link: &mut Link, give_up: &dyn Fn() -> bool) {
        let ids: Vec<String> = self.running.lock().keys().cloned().collect();
        for batch in ids.chunks(500) {
            let lost = link.retry(&self.scripts, give_up, |con| {
                let mut inv = wire::evalsha(&self.scripts.renew, &[&self.keys.queue]);
                inv.arg(GROUP).arg(&self.name);
                for id in batch {
                    inv.arg(id);
                }
                inv.query::<Vec<String>>(con)
            });
            for id in lost.unwrap_or_default() {
                log::warn!(target: "concurrent_futures::redis", "lost the lease of {id}: another worker holds it (this run's answer will be dropped), or Redis no longer has it (it will be delivered)");
            }
        }
    }

    fn heartbeat(&self, link: &mut Link) {
        let now = wire::now_ms();
        let keep = wire::millis(
            self.cfg
                .lease
                .saturating_mul(10)
                .max(Duration::from_secs(60)),
        );
        let running = self.running.lock().len();
        let _ = link.once(|con| {
            ::redis::pipe()
                .cmd("ZADD")
                .arg(&self.keys.workers)
                .arg(now)
                .arg(&self.name)
                .ignore()
                .cmd("ZREMRANGEBYSCORE")
                .arg(&self.keys.workers)
                .arg("-inf")
                .arg(now.saturating_sub(keep))
                .ignore()
                .cmd("PEXPIRE")
                .arg(&self.keys.workers)
                .arg(keep)
                .ignore()
                .cmd("HSET")
                .arg(self.worker_key())
                .arg("host")
                .arg(&self.host)
                .arg("pid")
                .arg(std::process::id())
                .arg("concurrency")
                .arg(self.cfg.concurrency)
                .arg("running")
                .arg(running)
                .arg("completed")
                .arg(self.completed.load(Ordering::Relaxed))
                .arg("lease_ms")
                .arg(wire::millis(self.cfg.lease))
                .arg("mode")
                .arg(match self.exec {
                    Exec::Threads(_) => "threads",
                    #[cfg(all(unix, feature = "process"))]
                    Exec::Processes(_) => "processes",
                })
                .ignore()
                .cmd("PEXPIRE")
                .arg(self.worker_key())
                .arg(keep)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&self.keys.queue)
                .arg(wire::millis(self.cfg.queue_ttl))
                .ignore()
                .query::<()>(con)
        });
    }

    /// Takes over entries idle for a lease (their worker stopped renewing them).
    ///
    /// In thread mode a taken-over task runs alone: the task that killed its last worker
    /// (an abort, a segfault, the OOM killer) kills no innocent task with it a second time.
    /// When entries are waiting to be taken over, this worker stops taking new ones, lets
    /// its running tasks end, then claims the waiting ones one at a time and runs each by
    /// itself. So a poison task uses up its `max_deliveries` alone and fails with
    /// `WorkerLost`, and the tasks that died beside it run again and complete.
    fn reclaim(self: &Arc<Self>, link: &mut Link, give_up: &dyn Fn() -> bool) {
        let mut free = self.free_slots();
        if self.shares_fate() {
            let waiting = link.retry(&self.scripts, give_up, |con| {
                let reply = ::redis::cmd("XPENDING")
                    .arg(&self.keys.queue)
                    .arg(GROUP)
                    .arg("IDLE")
                    .arg(wire::millis(self.cfg.lease))
                    .arg("-")
                    .arg("+")
                    .arg(1)
                    .query::<Value>(con);
                match reply {
                    Ok(v) => Ok(wire::array(&v).is_some_and(|rows| !rows.is_empty())),
                    Err(e) if e.code() == Some("NOGROUP") => Ok(false),
                    Err(e) => Err(e),
                }
            });
            if !waiting.unwrap_or(false) {
                self.isolating.store(false, Ordering::SeqCst);
                self.freed.notify_all(); // the reader may take new entries again
                return;
            }
            self.isolating.store(true, Ordering::SeqCst);
            if !self.running.lock().is_empty() {
                return; // the next tick looks again, once the running tasks have ended
            }
            free = 1;
        }
        if free == 0 {
            return;
        }
        let claimed = link.retry(&self.scripts, give_up, |con| {
            let reply = ::redis::cmd("XAUTOCLAIM")
                .arg(&self.keys.queue)
                .arg(GROUP)
                .arg(&self.name)
                .arg(wire::millis(self.cfg.lease))
                .arg("0-0")
                .arg("COUNT")
                .arg(free)
                .query::<Value>(con);
            let entries = match reply {
                Ok(v) => wire::array(&v)
                    .and_then(|parts| parts.get(1))
                    .map(wire::entries)
                    .unwrap_or_default(),
                Err(e) if e.code() == Some("NOGROUP") => Vec::new(),
                Err(e) => return Err(e),
            };
            if entries.is_empty() {
                return Ok(Vec::new());
            }
            // The delivery count of each, now that it is ours: the fence of our answer.
            let mut pipe = ::redis::pipe();
            for e in &entries {
                pipe.cmd("XPENDING")
                    .arg(&self.keys.queue)
                    .arg(GROUP)
                    .arg(&e.id)
                    .arg(&e.id)
                    .arg(1);
            }
            let counts: Vec<Value> = pipe.query(con)?;
            Ok(entries
                .into_iter()
                .zip(counts)
                .filter_map(|(e, c)| {
                    let row = wire::array(&c)?.first().and_then(wire::array)?.to_vec();
                    let owner = row.get(1).and_then(wire::text)?;
                    let count = row.get(3).and_then(wire::int)?;
                    (owner == self.name).then_some((e, u64::try_from(count).ok()?))
                })
                .collect())
        });
        let claimed = claimed.unwrap_or_default();
        for (raw, attempt) in &claimed {
            log::info!(target: "concurrent_futures::redis", "reclaimed {} (delivery {attempt}) from a silent worker", raw.id);
            self.take(raw, *attempt);
        }
        let ids: Vec<&str> = claimed
            .iter()
            .filter_map(|(raw, _)| raw.text("id"))
            .filter(|id| super::id::TaskId::checked(id).is_some())
            .collect();
        self.send_marks(link, &ids);
    }
}

impl Final {
    /// A message that only wakes the finisher.
    fn wake() -> Final {
        Final {
            id: String::new(),
            attempt: 0,
            route: None,
            outcome: Outcome::TimedOut,
            ttl: Duration::ZERO,
            dead: None,
        }
    }
}

/// A dead letter: where the entry came from, why it died, and its fields (the argument cut
/// to 4 KiB), so that `redis-cli XRANGE {ns}:dead - +` shows what happened.
fn dead_fields(raw: &RawEntry, why: &str, msg: &str, worker: &str) -> Vec<(String, String)> {
    let mut out = vec![
        ("entry".to_owned(), raw.id.clone()),
        ("why".to_owned(), why.to_owned()),
        ("msg".to_owned(), msg.chars().take(DEAD_PREVIEW).collect()),
        ("w".to_owned(), worker.to_owned()),
        ("at".to_owned(), wire::now_ms().to_string()),
    ];
    for (k, v) in raw.fields.iter().flatten().take(16) {
        if k.len() <= 16 && !out.iter().any(|(o, _)| o == k) {
            let v = &v[..v.len().min(DEAD_PREVIEW)];
            out.push((k.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    out
}
