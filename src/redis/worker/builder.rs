//! Settings of a worker ([`RedisWorkerBuilder`]), checked and connected by `spawn` and
//! `run`, which start its three threads; and the SIGINT/SIGTERM handlers of `run`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::{Exec, RedisWorker, SIGNALLED, Worker};
use crate::redis::SetupError;
use crate::redis::conn::Link;
use crate::redis::host;
use crate::redis::tasks::Tasks;
use crate::redis::wire::{Keys, Scripts};
use crate::thread::ThreadPoolExecutor;

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
///     .max_workers(8)
///     .lease(Duration::from_secs(30))
///     .run()?; // until SIGTERM or Ctrl-C
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until run() or spawn() is called"]
pub struct RedisWorkerBuilder {
    pub(super) url: String,
    pub(super) tasks: Tasks,
    pub(super) cfg: Config,
    pub(in crate::redis) tls: crate::redis::Tls,
}

#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) namespace: String,
    pub(super) concurrency: usize,
    pub(super) lease: Duration,
    pub(super) max_payload: usize,
    #[cfg_attr(not(all(unix, feature = "process")), allow(dead_code))]
    pub(super) processes: bool,
    pub(super) dead_ttl: Duration,
    pub(super) queue_ttl: Duration,
    pub(super) outage_limit: Duration,
    pub(super) setup_timeout: Duration,
    pub(super) sample_every: Duration,
}

#[cfg(unix)]
extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    SIGNALLED.store(true, Ordering::SeqCst);
}

#[cfg(unix)]
#[allow(unsafe_code)]
pub(super) fn install_signal_handlers() {
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
pub(super) fn install_signal_handlers() {}

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

    /// How many tasks run at once (default: the number of CPUs): its task slots, Celery's
    /// `--concurrency`. The same setting as the local pools' `max_workers`. Cheap I/O-bound
    /// tasks want more; each slot is a thread, or with [`processes`](Self::processes) a
    /// process.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// RedisWorker::builder("redis://127.0.0.1/", Tasks::new()).max_workers(32).run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_workers(mut self, n: usize) -> Self {
        self.cfg.concurrency = n.max(1);
        self
    }

    /// The former name of [`max_workers`](Self::max_workers), kept for one release.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// #[allow(deprecated)]
    /// let worker = RedisWorker::builder("redis://127.0.0.1/", Tasks::new()).concurrency(4);
    /// ```
    #[deprecated(
        since = "0.2.0",
        note = "renamed `max_workers`, the name the thread and process pools use for the same setting"
    )]
    pub fn concurrency(self, n: usize) -> Self {
        self.max_workers(n)
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
    /// `max_workers` processes instead of threads: a task that crashes its process fails
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
    /// [`SETUP_TIMEOUT`](crate::redis::SETUP_TIMEOUT), 10 s).
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

    /// How often the queue's [`history`](crate::redis::RedisExecutor::history) gets a
    /// sample (default 10 s, at least 1 s). A worker offers one with each heartbeat, every
    /// third of its [`lease`](Self::lease), and Redis keeps one per period whichever worker
    /// offers it; with workers of different settings, the shortest wins. The history keeps
    /// 2,160 samples: six hours at 10 s.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisWorker, Tasks};
    /// use std::time::Duration;
    /// RedisWorker::builder("redis://127.0.0.1/", Tasks::new())
    ///     .lease(Duration::from_secs(6))
    ///     .sample_every(Duration::from_secs(2))
    ///     .run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sample_every(mut self, every: Duration) -> Self {
        self.cfg.sample_every = every.max(Duration::from_secs(1));
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
        crate::redis::tasks::record_panic_locations();
        let (redis, address) = crate::redis::open(&self.url, &self.cfg.namespace, &self.tls)?;
        let keys = Keys::new(&self.cfg.namespace);
        let (mut setup, started) =
            crate::redis::setup_connection(&redis, &address, self.cfg.setup_timeout)?;
        let failed = SetupError::connect(&address, started);
        crate::redis::ensure_group(&mut setup, &keys).map_err(&failed)?;
        let scripts = Scripts::new();
        scripts.load(&mut setup).map_err(&failed)?;
        drop(setup);
        let exec = self.executor()?;
        let host = host::hostname();
        let name = format!(
            "{host}-{}-{:08x}",
            std::process::id(),
            host::random() as u32
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
            return crate::process::ProcessPoolExecutor::builder()
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
