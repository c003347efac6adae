//! [`RedisExecutor`]: queues tasks on a Redis stream and completes their futures from the
//! replies that workers append to this client's own reply stream.
//!
//! Three threads per executor: the *writer* sends queued tasks in pipelined batches (one
//! round trip for everything submitted meanwhile), the *reader* blocks on the reply stream
//! (`XREAD BLOCK`, its own connection) and completes futures as replies arrive, and the
//! callback pool runs done-callbacks so that a callback that waits on another task of this
//! executor never stalls the reader.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::Waker;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::redis::Value;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::conn::{self, Link, Patience};
use super::id::TaskId;
use super::info::{self, QueueInfo};
use super::periodic::Schedule;
use super::status::TaskStatus;
use super::tasks::{Outcome, Tasks};
use super::wire::{self, Keys, Scripts, FORMAT, GROUP};
use super::{LookupError, SetupError};
use crate::error::{panic_message, SubmitError, TaskError};
use crate::future::core::{self, Handle, Promised, RunCtx, Task, Waiter};
use crate::future::Future;
use crate::map::{self, Chunk, Map, MapUnordered, Source, Submitted};
use crate::PlainFn;
use crate::ThreadPoolExecutor;

/// How long the reader's `XREAD BLOCK` waits server-side before it looks around.
const BLOCK: Duration = Duration::from_secs(5);
/// How much later than its `BLOCK` an `XREAD` may come back before the reader counts Redis
/// as silent (frozen or cut off) and reconnects: a silent Redis is noticed within
/// `BLOCK + READ_GRACE`, 8 s.
const READ_GRACE: Duration = Duration::from_secs(3);
/// How long the writer waits for Redis to answer a pipeline of up to `BATCH` tasks.
const WRITER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the reader looks for tasks Redis lost, and how long a task's queue entry must
/// have been gone, without an answer, before the task counts as lost: two reads of the
/// reply stream at least, so an answer on its way is never mistaken for a loss.
const LOST_AFTER: Duration = Duration::from_secs(10);
/// The most tasks sent in one pipeline, and replies read in one `XREAD`.
const BATCH: usize = 512;
/// How many map chunks may be queued at once by default.
const MAP_BUFFER: usize = 256;
/// The longest error message kept from a reply.
const MAX_MESSAGE: usize = 64 * 1024;

/// Per-task settings: a time limit the worker enforces, and retries on failure.
///
/// Unset fields take the executor's defaults
/// ([`RedisExecutorBuilder::time_limit`], [`RedisExecutorBuilder::retries`]).
///
/// # Examples
///
/// ```
/// use concurrent_futures::redis::TaskOptions;
/// use std::time::Duration;
///
/// let opts = TaskOptions::new()
///     .time_limit(Duration::from_secs(30))
///     .retries(3, Duration::from_millis(500));
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskOptions {
    time_limit: Option<Duration>,
    retries: Option<(u32, Duration)>,
    id: Option<TaskId>,
    due: Option<SystemTime>,
}

impl TaskOptions {
    /// No per-task settings: the executor's defaults apply.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::redis::TaskOptions;
    /// assert_eq!(TaskOptions::new(), TaskOptions::default());
    /// ```
    pub fn new() -> TaskOptions {
        TaskOptions::default()
    }

    /// The longest the task may run on the worker; past it the worker reports
    /// [`TaskError::TimedOut`] (and, if it runs tasks in processes, kills the one running
    /// it). Unlike [`Future::result_timeout`], which only stops waiting, this stops the task.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::redis::TaskOptions;
    /// let opts = TaskOptions::new().time_limit(std::time::Duration::from_secs(5));
    /// # let _ = opts;
    /// ```
    pub fn time_limit(mut self, limit: Duration) -> TaskOptions {
        self.time_limit = Some(limit);
        self
    }

    /// Runs the task again, up to `times` more times, if it panics, times out or its
    /// worker process dies, waiting `backoff`, then twice that, and so on, between tries.
    /// Off by default: a task's failure is reported at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::redis::TaskOptions;
    /// let opts = TaskOptions::new().retries(2, std::time::Duration::from_millis(100));
    /// # let _ = opts;
    /// ```
    pub fn retries(mut self, times: u32, backoff: Duration) -> TaskOptions {
        self.retries = Some((times, backoff));
        self
    }

    /// The task's id, chosen by you: the submit becomes idempotent. While a task with
    /// this id is queued, running, or its record is kept (`result_ttl` after it ended), a
    /// submit with the same id queues nothing and its future completes with that task's
    /// outcome, in any process (RQ's `enqueue(..., job_id=...)`, Celery's
    /// `apply_async(task_id=...)`, BullMQ's `jobId`). Without it, the task gets a
    /// [`TaskId::generate`]d id.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, TaskId, TaskOptions, Tasks};
    /// fn charge(order: u64) -> bool { true }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("charge", charge)).build()?;
    /// let id: TaskId = "charge:order-42".parse()?;
    /// let first = ex.submit_with(charge, 42, TaskOptions::new().id(id.clone()))?;
    /// let again = ex.submit_with(charge, 42, TaskOptions::new().id(id))?; // a retried request
    /// assert_eq!(first.result()?, again.result()?); // charged once
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn id(mut self, id: TaskId) -> TaskOptions {
        self.id = Some(id);
        self
    }

    /// Runs the task no sooner than `delay` from now (RQ's `enqueue_in`, Celery's
    /// `countdown`). Until then it waits in Redis, not in this process: the producer may
    /// exit. Workers move due tasks into the queue at least every half second, so it
    /// starts within about that of its time while any worker is alive, never before.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, TaskOptions, Tasks};
    /// # use std::time::Duration;
    /// fn remind(user: u64) -> bool { true }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("remind", remind)).build()?;
    /// let fut = ex.submit_with(remind, 7, TaskOptions::new().delay(Duration::from_secs(3600)))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delay(mut self, delay: Duration) -> TaskOptions {
        self.due = SystemTime::now().checked_add(delay);
        self
    }

    /// Runs the task no sooner than `when` (RQ's `enqueue_at`, Celery's `eta`); a time in
    /// the past runs it now. `SystemTime` is an instant, not a wall-clock reading: there is
    /// no time zone to get wrong. See [`delay`](Self::delay).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, TaskOptions, Tasks};
    /// # use std::time::{Duration, SystemTime, UNIX_EPOCH};
    /// fn report(day: u32) -> u32 { day }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("report", report)).build()?;
    /// let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000); // 2027-01-15 08:00 UTC
    /// ex.submit_with(report, 15, TaskOptions::new().at(at))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn at(mut self, when: SystemTime) -> TaskOptions {
        self.due = Some(when);
        self
    }
}

/// Builds a [`RedisExecutor`]; from [`RedisExecutor::builder`].
///
/// # Examples
///
/// ```no_run
/// use concurrent_futures::redis::{RedisExecutor, Tasks};
/// use std::time::Duration;
///
/// fn double(x: u64) -> u64 { x * 2 }
///
/// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("double/v1", double))
///     .namespace("jobs")
///     .result_ttl(Duration::from_secs(3600))
///     .max_deliveries(3)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct RedisExecutorBuilder {
    url: String,
    tasks: Tasks,
    cfg: Config,
    pub(super) tls: super::Tls,
}

#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) namespace: String,
    pub(super) result_ttl: Duration,
    pub(super) max_deliveries: u32,
    pub(super) defaults: TaskOptions,
    pub(super) max_payload: usize,
    pub(super) queue_ttl: Duration,
    pub(super) outage_limit: Duration,
    pub(super) max_unsent: usize,
    pub(super) command_timeout: Duration,
    pub(super) setup_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            namespace: "cf".into(),
            result_ttl: Duration::from_secs(24 * 3600),
            max_deliveries: 3,
            defaults: TaskOptions::default(),
            max_payload: 16 << 20,
            queue_ttl: Duration::from_secs(7 * 24 * 3600),
            outage_limit: Duration::from_secs(60),
            max_unsent: 100_000,
            command_timeout: Duration::from_secs(2),
            setup_timeout: super::SETUP_TIMEOUT,
        }
    }
}

impl RedisExecutorBuilder {
    /// The key prefix shared with the workers: `{namespace}:queue` and so on (default
    /// `"cf"`). 1 to 64 ASCII letters, digits and `_ . -`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).namespace("thumbs").build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.cfg.namespace = namespace.to_owned();
        self
    }

    /// How long results, dead letters and this client's reply stream are kept in Redis
    /// after they were written (default one day).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new())
    ///     .result_ttl(std::time::Duration::from_secs(600))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.cfg.result_ttl = ttl;
        self
    }

    /// How long the client keeps its futures waiting while it cannot reach Redis at all
    /// (default 60 s): past this, every task not yet answered fails with
    /// [`TaskError::Unreachable`], naming the address and how long the client tried, and so
    /// does every task submitted while Redis stays out of reach. The outage is logged when
    /// it starts and when it ends. A restart of Redis shorter than this loses nothing.
    ///
    /// Reaching Redis is noticed through the client's reads: a server that stops answering
    /// (frozen, cut off) through read timeouts within 8 s (measured with a frozen server
    /// and a 2 s limit: the future failed 8.1 s after the freeze), a refused connection at
    /// once. Dropping the executor sends what is left to send, so it returns within about
    /// this limit plus those timeouts even when Redis is gone; `shutdown` waits for every
    /// future, which ends the same way.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// # use std::time::Duration;
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new())
    ///     .outage_limit(Duration::from_secs(300))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn outage_limit(mut self, limit: Duration) -> Self {
        self.cfg.outage_limit = limit;
        self
    }

    /// How many tasks may wait in this process for Redis to take them (default 100,000).
    /// `submit` never waits on Redis: it hands the task to the client's writer thread and
    /// returns. While Redis is out of reach (or slower than the submits), tasks wait here,
    /// and past this many `submit` refuses new ones with [`SubmitError::Full`], handing the
    /// function and argument back, rather than letting the queue grow without bound.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).max_unsent(1_000).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_unsent(mut self, n: usize) -> Self {
        self.cfg.max_unsent = n.max(1);
        self
    }

    /// How long [`Future::cancel`], [`RedisExecutor::attach`] and
    /// [`RedisExecutor::status`] may wait on Redis (default 2 s). A cancel that cannot
    /// reach Redis within it returns `false` (the task may still run); `attach` and
    /// `status` fail with [`SetupError::Connect`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// # use std::time::Duration;
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new())
    ///     .command_timeout(Duration::from_millis(500))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.command_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long [`build`](Self::build) and [`RedisExecutor::info`] wait for Redis to
    /// connect and answer before they fail with [`SetupError::Connect`] (default
    /// [`SETUP_TIMEOUT`](super::SETUP_TIMEOUT), 10 s).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// # use std::time::Duration;
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new())
    ///     .setup_timeout(Duration::from_secs(3))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn setup_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.setup_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// How many times a task may be handed to a worker (default 3): a worker that dies or
    /// loses its lease gives the task back, and after this many deliveries it fails with
    /// [`TaskError::WorkerLost`]. At least 1, at most 100.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).max_deliveries(5).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.cfg.max_deliveries = n.clamp(1, wire::MAX_TRIES);
        self
    }

    /// The default time limit of every task (see [`TaskOptions::time_limit`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new())
    ///     .time_limit(std::time::Duration::from_secs(60))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.cfg.defaults.time_limit = Some(limit);
        self
    }

    /// Retries for every task (see [`TaskOptions::retries`]); off by default.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new())
    ///     .retries(3, std::time::Duration::from_secs(1))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retries(mut self, times: u32, backoff: Duration) -> Self {
        self.cfg.defaults.retries = Some((times.min(wire::MAX_TRIES), backoff));
        self
    }

    /// The largest encoded argument this client sends and result it decodes (default 16
    /// MiB). Larger arguments are refused at submit ([`SubmitError::Rejected`]); larger
    /// results fail their task with [`TaskError::Transport`]. Workers have their own limit.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new())
    ///     .max_payload_bytes(1 << 20)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.cfg.max_payload = bytes;
        self
    }

    /// Connects, makes sure the queue and its consumer group exist, and starts the writer
    /// and reader threads.
    ///
    /// # Errors
    ///
    /// [`SetupError`] if the URL or namespace is invalid or Redis cannot be reached.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://:password@10.0.0.5:6379/0", Tasks::new()).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<RedisExecutor, SetupError> {
        let (redis, address) = super::open(&self.url, &self.cfg.namespace, &self.tls)?;
        let keys = Keys::new(&self.cfg.namespace);
        let (mut setup, started) =
            super::setup_connection(&redis, &address, self.cfg.setup_timeout)?;
        super::ensure_group(&mut setup, &keys).map_err(SetupError::connect(&address, started))?;
        drop(setup);
        // `submit` writes an idle client's task on it without reading the reply (the writer
        // reads it); `cancel` and the reader's wake-up are single quick commands.
        let mut control = Link::new(redis.clone(), "RedisExecutor", self.cfg.command_timeout);
        // Connected now: an idle client sends its next task on it directly (`send_now`
        // needs a connected link), without waking the writer.
        control
            .once(|con| ::redis::cmd("PING").query::<()>(con))
            .map_err(SetupError::connect(&address, started))?;
        let client_id = format!(
            "{}-{}-{:08x}",
            wire::hostname(),
            std::process::id(),
            wire::random() as u32
        );
        let callbacks = ThreadPoolExecutor::builder()
            .max_workers(64)
            .keep_alive(Duration::from_secs(1))
            .thread_name_prefix("RedisExecutor-callbacks")
            .build()
            .expect("a valid thread pool configuration");
        let (outbox, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            address,
            contact: Mutex::new(Instant::now()),
            outage: Mutex::new(None),
            reply_key: keys.reply(&client_id),
            client_id,
            keys,
            scripts: Scripts::new(),
            redis,
            tasks: self.tasks,
            cfg: self.cfg,
            seq: AtomicU64::new(1),
            refreshed: AtomicU64::new(0),
            bucket_refreshed: (0..wire::ID_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            book: Mutex::new(Book {
                waiting: HashMap::new(),
                by_id: HashMap::new(),
                closed: false,
            }),
            drained: Condvar::new(),
            outbox,
            control: Mutex::new(Control {
                link: control,
                owed: None,
            }),
            unsent: Arc::new(UnsentCount::default()),
            callbacks,
            threads: Mutex::new(Vec::new()),
        });
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(name.into())
                .spawn(body)
                .map_err(|e| SetupError::Config(format!("cannot start a thread: {e}")))
        };
        // Workers answer only clients whose reply stream exists.
        shared
            .keep_reply_stream(&mut shared.control.lock().link)
            .map_err(SetupError::connect(&shared.address, started))?;
        let w = shared.clone();
        let writer = spawn("RedisExecutor-writer", Box::new(move || writer(&w, &rx)))?;
        let r = shared.clone();
        let reader = spawn("RedisExecutor-reader", Box::new(move || reader(&r)))?;
        shared.threads.lock().extend([writer, reader]);
        Ok(RedisExecutor { shared })
    }
}

/// An executor whose tasks run on [`RedisWorker`](super::RedisWorker)s, on this machine or
/// any other that reaches the same Redis: Python's `concurrent.futures` API over a queue,
/// where RQ and Celery give up the `Future`.
///
/// Tasks are plain functions registered by name in a [`Tasks`] list that the client and
/// the workers share. `submit` returns an ordinary [`Future`]: `result`,
/// `result_timeout` (a client-side wait that never cancels the task), `cancel`,
/// `add_done_callback`, `.await`, [`as_completed`](crate::as_completed) and
/// [`wait`](crate::wait) work as they do on the local pools. The [`Executor`](crate::Executor)
/// trait makes generic code run unchanged on threads, processes and Redis.
///
/// Delivery is at least once: a task whose worker dies is run again by another worker
/// after its lease expires, up to [`max_deliveries`](RedisExecutorBuilder::max_deliveries),
/// and its future completes exactly once. See the crate's README ("Many machines") for the
/// guarantees and the Redis settings they need.
///
/// One difference from a local pool: the client is not told when a worker starts a task, so
/// `running()` turns true only once a `cancel()` found the task taken (and then returned
/// false); `done()`, results, callbacks and waits are exact.
///
/// Tasks are durable: each has a [`TaskId`] (`fut.task_id()`), its outcome is kept in Redis
/// for `result_ttl`, and any process can [`attach`](Self::attach) to it or read its
/// [`status`](Self::status). Dropping the executor sends every task submitted, then returns
/// without waiting for results (enqueue and exit); futures still held complete as usual.
/// [`shutdown`](Self::shutdown) waits for every result, as Python's does.
///
/// # Examples
///
/// ```no_run
/// use concurrent_futures::redis::{RedisExecutor, Tasks};
/// use concurrent_futures::as_completed;
///
/// fn square(x: u64) -> u64 { x * x }
/// fn tasks() -> Tasks { Tasks::new().add("square/v1", square) }
///
/// let ex = RedisExecutor::builder("redis://127.0.0.1/", tasks()).build()?;
/// let futs: Vec<_> = (0..10).map(|x| ex.submit(square, x)).collect::<Result<_, _>>()?;
/// for fut in as_completed(futs) {
///     println!("{}", fut.result()?);
/// }
/// let squares: Vec<u64> = ex.map(square, 0..100).collect::<Result<_, _>>()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisExecutor {
    shared: Arc<Shared>,
}

struct Shared {
    /// Where Redis is (`host:port` or a socket path), for error messages.
    address: String,
    /// When Redis last answered the writer or the reader.
    contact: Mutex<Instant>,
    /// When the current outage began (the last contact), while one lasts.
    outage: Mutex<Option<Instant>>,
    cfg: Config,
    tasks: Tasks,
    keys: Keys,
    client_id: String,
    reply_key: String,
    scripts: Scripts,
    redis: ::redis::Client,
    seq: AtomicU64,
    /// When the queue's TTL was last refreshed (ms since the epoch).
    refreshed: AtomicU64,
    /// When this client last refreshed the TTL of each bucket of the id index.
    bucket_refreshed: Vec<AtomicU64>,
    book: Mutex<Book>,
    /// Signalled when `book.waiting` becomes empty.
    drained: Condvar,
    outbox: Sender<Outgoing>,
    /// For an idle client's task, cancels and the reader's wake-up.
    control: Mutex<Control>,
    /// Tasks submitted that Redis has not taken (or refused) yet: at most `max_unsent`.
    unsent: Arc<UnsentCount>,
    callbacks: ThreadPoolExecutor,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The tasks this client waits for, by number (one per future), and by task id (several
/// futures of one client may follow one task: a repeated idempotent submit, an attach).
struct Book {
    waiting: HashMap<u64, Waiting>,
    by_id: HashMap<TaskId, Vec<u64>>,
    closed: bool,
}

impl Book {
    fn insert(&mut self, seq: u64, w: Waiting) {
        self.by_id.entry(w.task.clone()).or_default().push(seq);
        self.waiting.insert(seq, w);
    }

    fn remove(&mut self, seq: u64) -> Option<Waiting> {
        let w = self.waiting.remove(&seq)?;
        if let Some(seqs) = self.by_id.get_mut(&w.task) {
            seqs.retain(|s| *s != seq);
            if seqs.is_empty() {
                self.by_id.remove(&w.task);
            }
        }
        Some(w)
    }

    /// Every future of this client that follows task `id`.
    fn remove_task(&mut self, id: &TaskId) -> Vec<Waiting> {
        let seqs = self.by_id.remove(id).unwrap_or_default();
        seqs.into_iter()
            .filter_map(|seq| self.waiting.remove(&seq))
            .collect()
    }

    fn drain(&mut self) -> Vec<Waiting> {
        self.by_id.clear();
        self.waiting.drain().map(|(_, w)| w).collect()
    }
}

/// Completes a task's future from its reply (decoding the body as the task's type).
type Complete = Box<dyn for<'b> FnOnce(Result<&'b [u8], TaskError>) + Send>;

struct Waiting {
    task: TaskId,
    complete: Complete,
    cancel: Arc<dyn Cancel>,
    /// Where the task is in the queue, once sent: to notice that Redis lost it.
    slot: Arc<Slot>,
}

/// A queued task's way to cancel itself (for `shutdown(cancel_futures)`).
trait Cancel: Send + Sync {
    fn cancel_now(self: Arc<Self>) -> bool;
    /// Whether anyone but this client's book still holds the future (a dropped
    /// executor stops following the tasks nobody holds).
    fn held(self: Arc<Self>) -> bool;
}

/// A task not sent yet: its number, its slot, its entry's fields.
type Unsent = (u64, Arc<Slot>, Vec<(&'static str, String)>);

/// The control connection, and the task `submit` wrote on it whose replies are unread.
struct Control {
    link: Link,
    /// A task written by `submit` (an idle client's, sent without waking the writer) and
    /// how many replies it owes (its `XADD`, and a `PEXPIRE` when the queue's TTL was
    /// refreshed with it). Whoever uses the link next reads them first
    /// ([`Shared::settle`]); the writer is told to.
    owed: Option<(Unsent, usize, u64)>,
}

enum Outgoing {
    Task {
        seq: u64,
        slot: Arc<Slot>,
        fields: Vec<(&'static str, String)>,
    },
    /// Read the replies owed on the control link.
    Settle,
    Stop,
}

/// Where a task's queue entry stands, for `cancel`.
#[derive(Debug)]
struct Slot {
    /// The task it carries.
    task: TaskId,
    /// Whether the id was chosen by the user (the submit is then idempotent).
    unique: bool,
    /// Whether it is sent as idempotent by id (queued only if its id is unknown): an
    /// idle client's inline send, whose reply may never come, and every send after an
    /// attempt that may have reached Redis without its reply coming back. So a task sent
    /// twice that way is queued once.
    idempotent: std::sync::atomic::AtomicBool,
    /// When it is due, in ms since the epoch, if it runs later.
    due: Option<u64>,
    state: Mutex<SlotState>,
    sent: Condvar,
    /// The client's count of tasks not taken by Redis yet, which this one leaves once it
    /// is sent or dropped.
    unsent: Arc<UnsentCount>,
}

/// How many tasks wait in the client for Redis to take them; `flush` waits for zero.
#[derive(Debug, Default)]
struct UnsentCount {
    n: AtomicUsize,
    lock: Mutex<()>,
    zero: Condvar,
}

impl UnsentCount {
    fn get(&self) -> usize {
        self.n.load(Ordering::Acquire)
    }

    fn add(&self) {
        self.n.fetch_add(1, Ordering::AcqRel);
    }

    fn sub(&self) {
        if self.n.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _guard = self.lock.lock();
            self.zero.notify_all();
        }
    }

    /// Waits up to `d` for the count to reach zero; true if it did.
    fn wait_zero(&self, d: Duration) -> bool {
        let mut guard = self.lock.lock();
        if self.get() == 0 {
            return true;
        }
        self.zero.wait_for(&mut guard, d);
        self.get() == 0
    }
}

#[derive(Debug)]
enum SlotState {
    /// In the writer's channel.
    Local,
    /// In a pipeline whose answer has not come back.
    Sending,
    /// In Redis (queued, scheduled, or followed by id).
    Sent,
    /// Cancelled before it was sent, or refused by Redis: never to be sent.
    Dropped,
}

impl Slot {
    /// Moves to `next`, leaving the count of unsent tasks if the task was waiting to be
    /// sent and now is not (exactly once: `Sent` and `Dropped` are final).
    fn set(&self, st: &mut SlotState, next: SlotState) {
        let was_unsent = matches!(st, SlotState::Local | SlotState::Sending);
        let now_unsent = matches!(next, SlotState::Local | SlotState::Sending);
        *st = next;
        if was_unsent && !now_unsent {
            self.unsent.sub();
        }
        self.sent.notify_all();
    }

    fn begin_send(&self) -> bool {
        let mut st = self.state.lock();
        match *st {
            SlotState::Local => {
                *st = SlotState::Sending;
                true
            }
            _ => false,
        }
    }

    /// A send that Redis refused for now, or that failed: the task waits to be sent again
    /// (and may be cancelled meanwhile).
    fn back_to_local(&self) {
        let mut st = self.state.lock();
        if matches!(*st, SlotState::Sending) {
            self.set(&mut st, SlotState::Local);
        }
    }

    fn end_send(&self, id: Option<String>) {
        let mut st = self.state.lock();
        self.set(&mut st, id.map_or(SlotState::Dropped, |_| SlotState::Sent));
    }
}

/// A Redis task's future: a promise whose `cancel` first removes the queue entry.
/// Referenced by the user's futures, the book's `complete` and `cancel` (two), nothing else.
struct Remote<T: Send + 'static> {
    task: Arc<Task<T, Promised>>,
    slot: Arc<Slot>,
    shared: Weak<Shared>,
}

impl<T: Send + 'static> Remote<T> {
    fn future(self: &Arc<Self>) -> Future<T> {
        Future::from_task(self.clone())
    }
}

impl<T: Send + 'static> Cancel for Remote<T> {
    fn cancel_now(self: Arc<Self>) -> bool {
        let fut = self.future();
        self.cancel_with(&fut)
    }

    fn held(self: Arc<Self>) -> bool {
        // The book's two references, and this one.
        Arc::strong_count(&self) > 3
    }
}

impl<T: Send + 'static> Remote<T> {
    /// Withdraws the queue entry, then cancels the future; `fut` is the handle that its
    /// callbacks are given.
    fn cancel_with(&self, fut: &Future<T>) -> bool {
        match core::state_of(self.task.word()) {
            crate::State::Cancelled => return true,
            crate::State::Running | crate::State::Finished => return false,
            crate::State::Pending => {}
        }
        let Some(shared) = self.shared.upgrade() else {
            return false;
        };
        match shared.withdraw(&self.slot) {
            Some(true) => {
                // This client's other futures of the same task end too (Redis tells only
                // the other clients).
                let taken = shared.book.lock().remove_task(&self.slot.task);
                shared.notify_if_drained();
                let cancelled = self.task.cancel(fut);
                for w in taken {
                    if w.slot.task == self.slot.task && !Arc::ptr_eq(&w.slot, &self.slot) {
                        (w.complete)(Err(TaskError::Cancelled));
                    }
                }
                cancelled
            }
            Some(false) => {
                // A worker holds it: from now on it reads as running.
                self.task.set_running();
                false
            }
            None => false,
        }
    }
}

impl<T: Send + 'static> Handle<T> for Remote<T> {
    fn word(&self) -> u32 {
        self.task.word()
    }
    fn owner(&self) -> u32 {
        0
    }
    fn add_waiter(&self, waiter: Waiter<T>) -> Result<(), Waiter<T>> {
        self.task.add_waiter(waiter)
    }
    fn register_waker(&self, waker: &Waker) -> bool {
        self.task.register_waker(waker)
    }
    fn remove_waiters(&self, remove: &dyn Fn(&Waiter<T>) -> bool) {
        self.task.remove_waiters(remove);
    }
    fn take(&self) -> Result<T, TaskError> {
        self.task.take()
    }
    fn error(&self) -> Option<TaskError> {
        self.task.error()
    }
    fn cancel(&self, fut: &Future<T>) -> bool {
        self.cancel_with(fut)
    }
    fn set_running(&self) -> bool {
        self.task.set_running()
    }
    fn finish(
        &self,
        outcome: Result<T, TaskError>,
        fut: &Future<T>,
    ) -> Result<(), Result<T, TaskError>> {
        self.task.finish(outcome, fut)
    }
    fn run(&self, _fut: &Future<T>, _ctx: Option<&RunCtx<'_>>) -> bool {
        false
    }
    fn task_id(&self) -> Option<Arc<str>> {
        Some(self.slot.task.shared())
    }
}

impl Shared {
    /// Removes a task's entry from the queue if no worker has taken it. `Some(true)` if it
    /// will never run, `Some(false)` if a worker holds it or it finished, `None` if Redis
    /// could not be asked within `command_timeout`.
    fn withdraw(&self, slot: &Slot) -> Option<bool> {
        let deadline = Instant::now() + self.cfg.command_timeout;
        // An idle client's task may be on the control link with its reply unread.
        if let Some(mut control) = self.control.try_lock_until(deadline) {
            self.settle(&mut control);
        }
        {
            let mut st = slot.state.lock();
            loop {
                match &*st {
                    SlotState::Local => {
                        slot.set(&mut st, SlotState::Dropped);
                        return Some(true);
                    }
                    SlotState::Dropped => return Some(true),
                    // In a pipeline the writer is trying to send (Redis may be away).
                    SlotState::Sending => {
                        if slot.sent.wait_until(&mut st, deadline).timed_out() {
                            return None;
                        }
                    }
                    SlotState::Sent => break,
                }
            }
        }
        if self.outage.lock().is_some() {
            // Known to be out of reach: asking would only wait out `command_timeout` (and
            // `shutdown(cancel_futures)` would wait it out for every task).
            return None;
        }
        let mut control = self.control.try_lock_until(deadline)?;
        self.settle(&mut control);
        let late = || {
            let late = Instant::now() >= deadline;
            if late {
                self.unreachable(); // the next cancels do not wait it out again
            }
            late
        };
        control
            .link
            .retry(&self.scripts, &late, |con| {
                self.cancel_cmd(&slot.task).query::<i64>(con)
            })
            .map(|removed| removed == 1)
    }

    /// The `CANCEL` script for task `id`.
    fn cancel_cmd(&self, id: &TaskId) -> ::redis::Cmd {
        let task = id.as_str();
        let mut cmd = wire::evalsha(
            &self.scripts.cancel,
            &[
                &self.keys.ids(task),
                &self.keys.queue,
                &self.keys.result(task),
                &self.keys.watch(task),
                &self.keys.scheduled,
                &self.keys.payloads,
            ],
        );
        cmd.arg(GROUP)
            .arg(task)
            .arg(wire::millis(self.cfg.result_ttl))
            .arg(self.keys.reply(""))
            .arg(&self.client_id)
            .arg(wire::now_ms());
        cmd
    }

    /// Redis answered: an outage, if one was under way, is over.
    fn reached(&self) {
        *self.contact.lock() = Instant::now();
        if let Some(since) = self.outage.lock().take() {
            log::info!(target: "concurrent_futures::redis", "Redis at {} is reachable again after {:.1} s", self.address, since.elapsed().as_secs_f64());
        }
    }

    /// Redis could not be reached just now: starts an outage, or, once it has lasted past
    /// `outage_limit`, fails every task still waiting (their fate is unknown).
    fn unreachable(&self) {
        let since = *self.contact.lock();
        {
            let mut outage = self.outage.lock();
            if outage.is_none() {
                log::warn!(target: "concurrent_futures::redis", "Redis at {} cannot be reached; futures fail if this lasts over {:?}", self.address, self.cfg.outage_limit);
                *outage = Some(since);
            }
        }
        let lasted = since.elapsed();
        if lasted <= self.cfg.outage_limit {
            return;
        }
        let failed: Vec<Waiting> = self.book.lock().drain();
        if failed.is_empty() {
            return;
        }
        let why: Arc<str> = format!(
            "Redis at {} could not be reached for {:.1} s (outage_limit {:?}); the task may \
             still run if Redis comes back",
            self.address,
            lasted.as_secs_f64(),
            self.cfg.outage_limit
        )
        .into();
        log::error!(target: "concurrent_futures::redis", "{why}: failing {} waiting tasks", failed.len());
        for w in failed {
            (w.complete)(Err(TaskError::Unreachable(why.clone())));
        }
        self.drained.notify_all();
    }

    /// Looks for the tasks this client waits for: a task is in the index while queued or
    /// running, and its record is kept once it ended. One whose record exists although no
    /// answer came was answered while this client's reply stream was gone (Redis lost it):
    /// the record completes it. One in neither was lost with Redis's data. Either way only
    /// once it was seen so at the previous look too, two reads of the reply stream ago, so
    /// that an answer on its way is never taken for a loss. Returns the tasks seen so now,
    /// with when they were first seen so.
    fn find_lost(&self, link: &mut Link, missing: HashMap<u64, Instant>) -> HashMap<u64, Instant> {
        let sent: Vec<(u64, TaskId)> = {
            let book = self.book.lock();
            book.waiting
                .iter()
                .filter(|(_, w)| matches!(&*w.slot.state.lock(), SlotState::Sent))
                .map(|(seq, w)| (*seq, w.task.clone()))
                .collect()
        };
        let mut now_missing = HashMap::new();
        let mut records = Vec::new();
        for batch in sent.chunks(500) {
            let found = link.once(|con| {
                let mut pipe = ::redis::pipe();
                for (_, id) in batch {
                    pipe.cmd("GET").arg(self.keys.result(id.as_str()));
                    pipe.cmd("HEXISTS")
                        .arg(self.keys.ids(id.as_str()))
                        .arg(id.as_str());
                }
                pipe.query::<Vec<Value>>(con)
            });
            let Ok(found) = found else {
                return missing; // Redis is away: look again later
            };
            for ((seq, _), v) in batch.iter().zip(found.chunks(2)) {
                let record = wire::record(&v[0]);
                let indexed = wire::int(&v[1]) == Some(1);
                if record.is_empty() && indexed {
                    continue;
                }
                let since = missing.get(seq).copied().unwrap_or_else(Instant::now);
                if since.elapsed() >= LOST_AFTER && !record.is_empty() {
                    records.push((*seq, record));
                } else {
                    now_missing.insert(*seq, since);
                }
            }
        }
        for (seq, record) in records {
            log::warn!(target: "concurrent_futures::redis", "task {seq} was answered but the answer never reached this client (its reply stream was lost): completed from the task's record");
            self.complete_from_record(seq, &record);
        }
        let lost: Vec<Waiting> = {
            let mut book = self.book.lock();
            now_missing
                .iter()
                .filter(|(_, since)| since.elapsed() >= LOST_AFTER)
                .filter_map(|(seq, _)| book.remove(*seq))
                .collect()
        };
        if !lost.is_empty() {
            let why: Arc<str> = format!(
                "Redis at {} no longer has it: it is neither queued nor running, it left no \
                 record, and no answer came within {:?} (Redis restarted without its data, \
                 failed over to a replica that never received it, or was flushed)",
                self.address, LOST_AFTER
            )
            .into();
            log::error!(target: "concurrent_futures::redis", "{} tasks lost: {why}", lost.len());
            for w in lost {
                (w.complete)(Err(TaskError::Lost(why.clone())));
            }
            self.notify_if_drained();
        }
        now_missing.retain(|seq, _| self.waits_for(*seq));
        now_missing
    }

    /// Makes sure this client's reply stream exists (workers answer only clients whose
    /// stream exists, so that a client that left costs nothing) and keeps its TTL fresh:
    /// `result_ttl`, at least a minute, refreshed every 5 s by the reader.
    fn keep_reply_stream(&self, link: &mut Link) -> ::redis::RedisResult<()> {
        let ttl = wire::millis(self.cfg.result_ttl.max(Duration::from_secs(60)));
        link.once(|con| {
            let alive: i64 = ::redis::cmd("PEXPIRE")
                .arg(&self.reply_key)
                .arg(ttl)
                .query(con)?;
            if alive == 0 {
                ::redis::pipe()
                    .cmd("XADD")
                    .arg(&self.reply_key)
                    .arg("*")
                    .arg("s")
                    .arg("hello")
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&self.reply_key)
                    .arg(ttl)
                    .ignore()
                    .query::<()>(con)?;
            }
            Ok(())
        })
    }

    /// After the executor was dropped: stops following the tasks whose futures nobody
    /// holds any more (they are in Redis; their records can be attached to later), so
    /// that the reader ends once the futures still held are done. Tasks not sent yet
    /// stay: the writer sends them first.
    fn forget_unheld(&self) {
        let mut book = self.book.lock();
        let gone: Vec<u64> = book
            .waiting
            .iter()
            .filter(|(_, w)| {
                matches!(&*w.slot.state.lock(), SlotState::Sent | SlotState::Dropped)
                    && !w.cancel.clone().held()
            })
            .map(|(seq, _)| *seq)
            .collect();
        let forgotten: Vec<Waiting> = gone
            .into_iter()
            .filter_map(|seq| book.remove(seq))
            .collect();
        let empty = book.waiting.is_empty();
        drop(book);
        drop(forgotten);
        if empty {
            self.drained.notify_all();
        }
    }

    /// Whether this client still waits for task `seq`.
    fn waits_for(&self, seq: u64) -> bool {
        self.book.lock().waiting.contains_key(&seq)
    }

    fn notify_if_drained(&self) {
        if self.book.lock().waiting.is_empty() {
            self.drained.notify_all();
        }
    }

    /// A future for the task in `slot`, and how its reply completes it (decoded by
    /// `decode`).
    fn remote<T: Send + 'static>(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        decode: impl for<'b> FnOnce(Result<&'b [u8], TaskError>) -> Result<T, TaskError>
            + Send
            + 'static,
    ) -> (Arc<Remote<T>>, Complete) {
        let remote = Arc::new(Remote {
            task: Task::new(Promised, 0),
            slot: slot.clone(),
            shared: Arc::downgrade(self),
        });
        let r = remote.clone();
        let complete: Complete = Box::new(move |reply| {
            let outcome = decode(reply);
            let fut = r.future();
            let _ = r.finish(outcome, &fut);
        });
        (remote, complete)
    }

    /// Records a future that follows task `id` without sending anything (`attach`); `None`
    /// after shutdown.
    fn follow<T: Send + 'static>(
        self: &Arc<Self>,
        id: TaskId,
        decode: impl for<'b> FnOnce(Result<&'b [u8], TaskError>) -> Result<T, TaskError>
            + Send
            + 'static,
    ) -> Option<(u64, Arc<Remote<T>>)> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            task: id.clone(),
            unique: true,
            idempotent: std::sync::atomic::AtomicBool::new(false),
            due: None,
            // Not a send: nothing for `max_unsent` or `flush` to count.
            state: Mutex::new(SlotState::Sending),
            sent: Condvar::new(),
            unsent: Arc::new(UnsentCount::default()),
        });
        slot.unsent.add();
        let (remote, complete) = self.remote(&slot, decode);
        let mut book = self.book.lock();
        if book.closed {
            return None;
        }
        book.insert(
            seq,
            Waiting {
                task: id,
                complete,
                cancel: remote.clone(),
                slot,
            },
        );
        Some((seq, remote))
    }

    /// Runs one script call on `link`, loading the scripts first if Redis lost them.
    fn run_script<T>(
        &self,
        link: &mut Link,
        mut f: impl FnMut(&mut ::redis::Connection) -> ::redis::RedisResult<T>,
    ) -> ::redis::RedisResult<T> {
        match link.once(&mut f) {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                link.once(|con| self.scripts.load(con))?;
                link.once(f)
            }
            other => other,
        }
    }

    /// The control link for one command of the public API (`attach`, `status`,
    /// `cancel`, `schedule`), with any reply owed on it read first; waits at most
    /// `command_timeout` for another such command to end.
    fn control_for_command(
        &self,
        started: Instant,
    ) -> Result<parking_lot::MutexGuard<'_, Control>, SetupError> {
        let mut control = self
            .control
            .try_lock_for(self.cfg.command_timeout)
            .ok_or_else(|| self.busy(started))?;
        self.settle(&mut control);
        Ok(control)
    }

    /// The control link stayed busy (another cancel, attach or status waiting on Redis).
    fn busy(&self, started: Instant) -> SetupError {
        SetupError::Connect {
            address: self.address.clone(),
            reason: format!(
                "timed out after {:.1} s waiting for the client's control connection (Redis is \
                 slow to answer)",
                started.elapsed().as_secs_f64()
            ),
            source: Arc::new(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        }
    }

    /// Queues a task: records how to complete it, then hands it to the writer.
    fn send<T: Send + 'static>(
        self: &Arc<Self>,
        name: &str,
        chunk: bool,
        args: String,
        opts: TaskOptions,
        decode: impl for<'b> FnOnce(Result<&'b [u8], TaskError>) -> Result<T, TaskError>
            + Send
            + 'static,
    ) -> Result<Future<T>, SubmitError<()>> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let unique = opts.id.is_some();
        let task = opts.id.clone().unwrap_or_else(TaskId::generate);
        let due = opts.due.map(|t| {
            t.duration_since(UNIX_EPOCH)
                .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .max(1)
        });
        let slot = Arc::new(Slot {
            task: task.clone(),
            unique,
            idempotent: std::sync::atomic::AtomicBool::new(false),
            due,
            state: Mutex::new(SlotState::Local),
            sent: Condvar::new(),
            unsent: self.unsent.clone(),
        });
        let (remote, complete) = self.remote(&slot, decode);
        let alone = {
            let mut book = self.book.lock();
            if book.closed {
                return Err(SubmitError::Shutdown(()));
            }
            let unsent = self.unsent.get();
            if unsent >= self.cfg.max_unsent {
                let why = match *self.outage.lock() {
                    Some(since) => format!(
                        "Redis at {} has not been reached for {:.1} s",
                        self.address,
                        since.elapsed().as_secs_f64()
                    ),
                    None => format!("Redis at {} takes them slower than they come", self.address),
                };
                return Err(SubmitError::Full {
                    task: (),
                    reason: format!(
                        "{unsent} tasks wait in this process for Redis to take them \
                         (max_unsent {}): {why}",
                        self.cfg.max_unsent
                    )
                    .into(),
                });
            }
            self.unsent.add();
            book.insert(
                seq,
                Waiting {
                    task: task.clone(),
                    complete,
                    cancel: remote.clone(),
                    slot: slot.clone(),
                },
            );
            book.waiting.len() == 1
        };
        let opts = TaskOptions {
            time_limit: opts.time_limit.or(self.cfg.defaults.time_limit),
            retries: opts.retries.or(self.cfg.defaults.retries),
            id: None,
            due: None,
        };
        // Fields at their defaults are left out: a queued task costs Redis less memory.
        let mut fields = vec![
            ("v", FORMAT.to_owned()),
            ("id", task.as_str().to_owned()),
            ("fn", name.to_owned()),
            ("c", self.client_id.clone()),
            ("a", args),
        ];
        if chunk {
            fields.push(("k", "chunk".to_owned()));
        }
        if self.cfg.max_deliveries != wire::DEFAULT_TRIES {
            fields.push(("tries", self.cfg.max_deliveries.to_string()));
        }
        if self.cfg.result_ttl != wire::DEFAULT_TTL {
            fields.push(("ttl", wire::millis(self.cfg.result_ttl).to_string()));
        }
        if let Some(limit) = opts.time_limit {
            fields.push(("limit", wire::millis(limit).to_string()));
        }
        if let Some((times, backoff)) = opts.retries {
            fields.push(("retries", times.to_string()));
            fields.push(("backoff", wire::millis(backoff).to_string()));
        }
        let out = (seq, slot, fields);
        // The only task of an otherwise idle client is written from this thread: waking
        // the writer first would add a thread wake-up to its round trip. The reply is not
        // awaited here (`submit` never waits on Redis): the writer reads it. Under load the
        // writer sends everything queued meanwhile in one pipeline instead.
        let out = if alone && self.outage.lock().is_none() {
            match self.control.try_lock() {
                Some(mut control) if control.owed.is_none() && control.link.is_connected() => {
                    self.send_inline(&mut control, out)
                }
                _ => Some(out),
            }
        } else {
            Some(out)
        };
        let _ = self.outbox.send(match out {
            Some((seq, slot, fields)) => Outgoing::Task { seq, slot, fields },
            None => Outgoing::Settle,
        });
        Ok(remote.future())
    }

    /// Sends one task on `link`, once; hands it back for the writer (which retries) if the
    /// connection failed.
    /// Writes one task on the control link without reading the reply, so that `submit`
    /// never waits on Redis; the reply is owed ([`Control::owed`]) and read by the next
    /// user of the link, the writer at the latest. Hands the task back if it could not be
    /// written.
    fn send_inline(&self, control: &mut Control, out: Unsent) -> Option<Unsent> {
        let (seq, slot, fields) = out;
        if !slot.begin_send() {
            return None; // cancelled already
        }
        // The queue's TTL is a week: refreshing it once a minute is plenty, and keeps the
        // command off most round trips.
        let now = wire::now_ms();
        let refresh = now.saturating_sub(self.refreshed.load(Ordering::Relaxed)) > 60_000;
        // Its reply may never come (Redis froze right after the write), and then the
        // writer sends it again: both copies go by id, so whichever Redis takes first wins.
        slot.idempotent.store(true, Ordering::Relaxed);
        let cmd = self.submit_cmd([(&*slot, &fields[..])], refresh);
        match control.link.send_only(&cmd.get_packed_command()) {
            Ok(()) => {
                control.owed = Some(((seq, slot, fields), 1, if refresh { now } else { 0 }));
                None
            }
            Err(_) => {
                slot.back_to_local();
                Some((seq, slot, fields))
            }
        }
    }

    /// The `SUBMIT` script for a batch of tasks (one script call for all of them): queues
    /// each and indexes it by id, unless its id (chosen by the user) is known already.
    fn submit_cmd<'a>(
        &self,
        batch: impl IntoIterator<Item = (&'a Slot, &'a [(&'static str, String)])>,
        refresh: bool,
    ) -> ::redis::Cmd {
        let mut cmd = wire::evalsha(
            &self.scripts.submit,
            &[&self.keys.queue, &self.keys.scheduled, &self.keys.payloads],
        );
        let now = wire::now_ms();
        let ttl = wire::millis(self.cfg.queue_ttl);
        cmd.arg(&self.client_id).arg(if refresh { ttl } else { 0 });
        for (slot, fields) in batch {
            let id = slot.task.as_str();
            // Each index bucket's TTL is refreshed by this client at most once a minute.
            let bucket = &self.bucket_refreshed[wire::id_bucket(id)];
            let stale = now.saturating_sub(bucket.load(Ordering::Relaxed)) > 60_000;
            if stale {
                bucket.store(now, Ordering::Relaxed);
            }
            // A scheduled task's keys outlive its due time by the queue's TTL.
            let keep = ttl.saturating_add(slot.due.map_or(0, |d| d.saturating_sub(now)));
            cmd.arg(id)
                .arg(if slot.unique || slot.idempotent.load(Ordering::Relaxed) {
                    "1"
                } else {
                    "0"
                })
                .arg(self.keys.ids(id))
                .arg(self.keys.result(id))
                .arg(self.keys.watch(id))
                .arg(keep)
                .arg(if stale { ttl } else { 0 })
                .arg(slot.due.filter(|d| *d > now).unwrap_or(0))
                .arg(fields.len() * 2);
            for (k, v) in fields {
                cmd.arg(*k).arg(v);
            }
        }
        cmd
    }

    /// Reads the replies owed on the control link, if any, and records what they say: the
    /// task's entry id, or its refusal. A task whose reply cannot be read (Redis froze or
    /// the connection broke right after the write) goes to the writer, which sends it
    /// again: at least once, as every send after a lost reply.
    fn settle(&self, control: &mut Control) {
        let Some(((seq, slot, fields), owed, refreshed)) = control.owed.take() else {
            return;
        };
        let mut replies = Vec::with_capacity(owed);
        for _ in 0..owed {
            match control.link.recv() {
                // (Redis's refusals come as `Value::ServerError`.)
                Ok(v) => replies.push(v),
                Err(e) => {
                    log::warn!(target: "concurrent_futures::redis", "no answer from Redis at {} to a task sent inline ({e}); the writer sends it again, by id", self.address);
                    slot.idempotent.store(true, Ordering::Relaxed);
                    slot.back_to_local();
                    let _ = self.outbox.send(Outgoing::Task { seq, slot, fields });
                    return;
                }
            }
        }
        if refreshed != 0 {
            self.refreshed.store(refreshed, Ordering::Relaxed);
        }
        self.reached();
        let replies = wire::per_item(replies.first(), 1);
        if conn::refused_for_now(replies.first()).is_some() || no_script(replies.first()) {
            // Refused for now (Redis is loading, say), or the scripts are not loaded (Redis
            // restarted): the writer retries it.
            slot.back_to_local();
            let _ = self.outbox.send(Outgoing::Task { seq, slot, fields });
        } else {
            self.sent(seq, &slot, replies.first());
        }
    }

    /// Records the entry id of a sent task, or fails the task if Redis refused it.
    fn sent(&self, seq: u64, slot: &Slot, reply: Option<&Value>) {
        match reply {
            Some(v) if wire::text(v).is_some_and(wire::valid_stream_id) => {
                slot.end_send(wire::text(v).map(str::to_owned));
            }
            // An idempotent submit of a task known already (this future follows it), or a
            // task scheduled for later.
            Some(Value::Array(parts))
                if matches!(
                    parts.first().and_then(wire::text),
                    Some("exists" | "scheduled")
                ) && parts.get(1).and_then(wire::text).is_some() =>
            {
                slot.end_send(parts.get(1).and_then(wire::text).map(str::to_owned));
            }
            // ... that finished already: its kept record completes the future.
            Some(Value::Array(parts)) if parts.first().and_then(wire::text) == Some("done") => {
                slot.end_send(None);
                let record = parts.get(1).map(wire::record).unwrap_or_default();
                self.complete_from_record(seq, &record);
            }
            other => {
                slot.end_send(None);
                let why = match other {
                    Some(Value::ServerError(e)) => format!(
                        "Redis refused to queue the task: {} {}",
                        e.code(),
                        e.details().unwrap_or_default()
                    ),
                    _ => "Redis gave no entry id for the task".to_owned(),
                };
                self.complete(seq, Err(TaskError::Transport(why.into())));
            }
        }
    }

    /// Completes task `seq` (if this client still waits for it).
    fn complete(&self, seq: u64, reply: Result<&[u8], TaskError>) {
        let waiting = self.book.lock().remove(seq);
        if let Some(w) = waiting {
            (w.complete)(reply);
            self.notify_if_drained();
        }
    }

    /// Completes future `seq` from a task's kept record (its fields as read).
    fn complete_from_record(&self, seq: u64, record: &[(String, Vec<u8>)]) {
        let get = |k: &str| record.iter().find(|(f, _)| f == k).map(|(_, v)| &v[..]);
        let status = get("s")
            .and_then(|s| std::str::from_utf8(s).ok())
            .unwrap_or("");
        let reply = self.reply_of(status, get("r").unwrap_or(b""));
        self.complete(seq, reply);
    }

    /// A reply entry: completes the futures of its task after checking every field.
    fn deliver(&self, e: &wire::RawEntry) {
        let Some(task) = e.text("id").and_then(TaskId::checked) else {
            return; // a wake-up, or garbage: nothing waits for it
        };
        let status = e.text("s").unwrap_or("");
        let body = e.get("r").unwrap_or(b"");
        let waiting = self.book.lock().remove_task(&task);
        if waiting.is_empty() {
            return;
        }
        for w in waiting {
            (w.complete)(self.reply_of(status, body));
        }
        self.notify_if_drained();
    }

    /// What a reply's status and body mean for a future.
    fn reply_of<'b>(&self, status: &str, body: &'b [u8]) -> Result<&'b [u8], TaskError> {
        if body.len() > self.cfg.max_payload {
            Err(TaskError::Transport(
                format!(
                    "the result is {} bytes, above this client's limit of {} (max_payload_bytes)",
                    body.len(),
                    self.cfg.max_payload
                )
                .into(),
            ))
        } else {
            let message = String::from_utf8_lossy(&body[..body.len().min(MAX_MESSAGE)]);
            match Outcome::error(status, &message) {
                None => Ok(body),
                Some(err) => Err(err),
            }
        }
    }

    fn callback_sink(self: &Arc<Self>) -> core::CallbackSink {
        let shared = Arc::downgrade(self);
        Arc::new(move |callbacks: Box<dyn FnOnce() + Send>| {
            let refused = match shared.upgrade() {
                Some(shared) => shared
                    .callbacks
                    .submit(callbacks)
                    .err()
                    .map(SubmitError::into_inner),
                None => Some(callbacks),
            };
            if let Some(callbacks) = refused {
                callbacks();
            }
        })
    }

    /// Wakes the reader out of its `XREAD BLOCK` with an entry that completes nothing.
    fn wake_reader(&self) {
        if self.outage.lock().is_some() {
            return; // the reader looks at `finished` at least every BLOCK + READ_GRACE
        }
        let Some(mut control) = self.control.try_lock_for(self.cfg.command_timeout) else {
            return; // the reader looks at `finished` at least every BLOCK anyway
        };
        self.settle(&mut control);
        let _ = control.link.once(|con| {
            ::redis::cmd("XADD")
                .arg(&self.reply_key)
                .arg("*")
                .arg("s")
                .arg("wake")
                .query::<Value>(con)
                .and_then(|_| {
                    ::redis::cmd("PEXPIRE")
                        .arg(&self.reply_key)
                        .arg(wire::millis(self.cfg.result_ttl))
                        .query::<()>(con)
                })
        });
    }
}

/// The writer thread: sends queued tasks, everything that queued up meanwhile in one
/// pipeline, until told to stop.
fn writer(shared: &Arc<Shared>, rx: &Receiver<Outgoing>) {
    // Futures failed here (an outage past the limit) run their callbacks elsewhere.
    core::defer_callbacks(shared.callback_sink());
    let mut link = Link::new(shared.redis.clone(), "RedisExecutor writer", WRITER_TIMEOUT);
    // The writer leaves only once the executor is shut down and no task waits: every task
    // not yet sent is one this client waits for (a submit records it before queueing it),
    // so a submit that won its race with `shutdown` is still sent, however late its
    // message comes.
    let finished = || {
        let book = shared.book.lock();
        book.closed && book.waiting.is_empty()
    };
    loop {
        let first = if shared.book.lock().closed {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(out) => Some(out),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(out) => Some(out),
                Err(_) => break,
            }
        };
        let mut batch = Vec::new();
        let mut settle = false;
        let mut next = first;
        while let Some(out) = next.take() {
            match out {
                Outgoing::Task { seq, slot, fields } => batch.push((seq, slot, fields)),
                Outgoing::Settle => settle = true,
                // Only wakes the writer to look at `finished`.
                Outgoing::Stop => {}
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if settle {
            shared.settle(&mut shared.control.lock());
        }
        {
            // One look at the book for the whole batch: a task failed meanwhile (Redis was
            // out of reach too long) is not sent, nor is one cancelled before it was sent.
            let book = shared.book.lock();
            batch.retain(|(seq, slot, _)| {
                if book.waiting.contains_key(seq) {
                    slot.begin_send()
                } else {
                    slot.end_send(None);
                    false
                }
            });
        }
        if batch.is_empty() {
            if finished() {
                break;
            }
            continue;
        }
        // Sent until Redis takes them: a refusal for now (`LOADING` while Redis replays its
        // data after a restart, a failover's `READONLY`) is retried, never a task's failure.
        let mut patience = Patience::new("RedisExecutor writer");
        while !batch.is_empty() {
            // Tried until Redis takes them, or until every one of them has failed for an
            // outage longer than the limit.
            let give_up = || {
                shared.unreachable();
                batch.iter().all(|(seq, _, _)| !shared.waits_for(*seq))
            };
            // After a failed attempt the batch may have been queued without its reply
            // coming back: every later attempt sends it as idempotent by id.
            let attempts = std::cell::Cell::new(0u32);
            let replies = link.retry(&shared.scripts, &give_up, |con| {
                if attempts.replace(attempts.get() + 1) > 0 {
                    for (_, slot, _) in &batch {
                        slot.idempotent.store(true, Ordering::Relaxed);
                    }
                }
                let mut pipe = ::redis::pipe();
                pipe.ignore_errors();
                pipe.add_command(shared.submit_cmd(
                    batch.iter().map(|(_, slot, fields)| (&**slot, &fields[..])),
                    true,
                ));
                let reply = pipe.query::<Vec<Value>>(con)?;
                Ok(wire::per_item(reply.first(), batch.len()))
            });
            let Some(replies) = replies else {
                // Every task of the batch failed with the outage: never to be sent, and no
                // `cancel` waits on a send that will not end.
                for (_, slot, _) in &batch {
                    slot.end_send(None);
                }
                break;
            };
            shared.reached();
            // Redis answers again: reconnect the control link if a timeout dropped it, so
            // that an idle client's next task is sent inline again.
            if let Some(mut control) = shared.control.try_lock() {
                if !control.link.is_connected() {
                    let _ = control
                        .link
                        .once(|con| ::redis::cmd("PING").query::<()>(con));
                }
            }
            let mut again = Vec::new();
            let mut code = String::new();
            let mut reload = false;
            for (i, (seq, slot, fields)) in batch.into_iter().enumerate() {
                if no_script(replies.get(i)) {
                    reload = true;
                    slot.back_to_local();
                    again.push((seq, slot, fields));
                    continue;
                }
                match conn::refused_for_now(replies.get(i)) {
                    Some(c) => {
                        code = c.to_owned();
                        slot.back_to_local();
                        again.push((seq, slot, fields));
                    }
                    None => shared.sent(seq, &slot, replies.get(i)),
                }
            }
            if again.is_empty() {
                patience.done();
                break;
            }
            if reload {
                // Redis restarted and lost its script cache: load them, then send again.
                if let Err(e) = link.once(|con| shared.scripts.load(con)) {
                    log::warn!(target: "concurrent_futures::redis", "RedisExecutor writer: cannot load scripts: {e}");
                }
            }
            if !code.is_empty() {
                patience.wait(&mut link, &code, again.len());
            }
            // A task cancelled meanwhile is not sent.
            batch = again
                .into_iter()
                .filter(|(_, slot, _)| slot.begin_send())
                .collect();
        }
    }
}

/// The reader thread: blocks on this client's reply stream and completes futures, until the
/// executor is shut down and nothing is left to wait for.
fn reader(shared: &Arc<Shared>) {
    core::defer_callbacks(shared.callback_sink());
    let mut link = Link::new(
        shared.redis.clone(),
        "RedisExecutor reader",
        BLOCK + READ_GRACE,
    );
    let finished = || {
        let book = shared.book.lock();
        book.closed && book.waiting.is_empty()
    };
    let mut last = "0-0".to_owned();
    let mut read: Vec<String> = Vec::new();
    let mut deleted = Instant::now();
    // Tasks whose queue entries were gone at the last look, and since when.
    let mut missing: HashMap<u64, Instant> = HashMap::new();
    let mut looked = Instant::now();
    // When the reply stream's TTL was last refreshed.
    let mut kept = Instant::now();
    // The last read took everything the reply stream held: no answer waits unread.
    let mut caught_up = false;
    let give_up = || {
        shared.unreachable();
        finished()
    };
    while !finished() {
        // Only with every answer read and delivered: a task whose entry is gone then has
        // its answer in hand, or has none anywhere.
        if kept.elapsed() >= LOST_AFTER / 2 {
            let _ = shared.keep_reply_stream(&mut link);
            kept = Instant::now();
        }
        if caught_up && looked.elapsed() >= LOST_AFTER / 2 {
            missing = shared.find_lost(&mut link, std::mem::take(&mut missing));
            looked = Instant::now();
        }
        if shared.book.lock().closed {
            shared.forget_unheld();
        }
        let Some(reply) = link.retry(&shared.scripts, &give_up, |con| {
            ::redis::cmd("XREAD")
                .arg("COUNT")
                .arg(BATCH)
                .arg("BLOCK")
                .arg(wire::millis(BLOCK))
                .arg("STREAMS")
                .arg(&shared.reply_key)
                .arg(&last)
                .query::<Value>(con)
        }) else {
            break;
        };
        shared.reached();
        let entries = wire::read_reply(&reply);
        caught_up = entries.len() < BATCH;
        let Some(newest) = entries.last() else {
            continue;
        };
        last.clone_from(&newest.id);
        for e in &entries {
            shared.deliver(e);
        }
        // Read entries are deleted in batches, off the path of the next round trip.
        read.extend(entries.into_iter().map(|e| e.id));
        if read.len() >= BATCH || deleted.elapsed() >= Duration::from_secs(1) {
            let _ = link.once(|con| {
                let mut del = ::redis::cmd("XDEL");
                del.arg(&shared.reply_key);
                for id in &read {
                    del.arg(id);
                }
                del.query::<()>(con)
            });
            read.clear();
            deleted = Instant::now();
        }
    }
    // Not while Redis is out of reach (a connection attempt could take seconds): the reply
    // stream expires by itself after `result_ttl`.
    if shared.outage.lock().is_none() {
        let _ = link.once(|con| ::redis::cmd("DEL").arg(&shared.reply_key).query::<()>(con));
    }
}

/// Whether a reply says the scripts are not loaded (Redis restarted and lost its cache).
fn no_script(reply: Option<&Value>) -> bool {
    matches!(reply, Some(Value::ServerError(e)) if e.code() == "NOSCRIPT")
}

fn decode_one<R: DeserializeOwned>(body: &[u8]) -> Result<R, TaskError> {
    serde_json::from_slice(body).map_err(|e| {
        TaskError::Transport(
            format!(
                "the result in Redis does not decode as {}: {e}",
                std::any::type_name::<R>()
            )
            .into(),
        )
    })
}

/// A chunk's results: exactly `n` of them, or the same error for each.
fn decode_chunk<R: DeserializeOwned>(reply: Result<&[u8], TaskError>, n: usize) -> Chunk<R> {
    let all_fail = |e: TaskError| (0..n).map(|_| Err(e.clone())).collect();
    let body = match reply {
        Ok(body) => body,
        Err(e) => return all_fail(e),
    };
    let items: Vec<serde_json::Value> = match serde_json::from_slice(body) {
        Ok(items) => items,
        Err(e) => {
            return all_fail(TaskError::Transport(
                format!("the chunk's results in Redis do not decode: {e}").into(),
            ))
        }
    };
    if items.len() != n {
        return all_fail(TaskError::Transport(
            format!("the worker sent {} results for {n} items", items.len()).into(),
        ));
    }
    items
        .into_iter()
        .map(|mut item| {
            if let Some(value) = item.get_mut("ok") {
                return serde_json::from_value(value.take()).map_err(|e| {
                    TaskError::Transport(format!("cannot decode the result: {e}").into())
                });
            }
            let status = item.get("err").and_then(|s| s.as_str()).unwrap_or("?");
            let msg = item.get("msg").and_then(|s| s.as_str()).unwrap_or("");
            Err(Outcome::error(status, msg).unwrap_or_else(|| {
                TaskError::Transport("a chunk item has neither ok nor err".into())
            }))
        })
        .collect()
}

impl RedisExecutor {
    /// Starts building an executor that talks to the Redis at `url`
    /// (`redis://[user:password@]host[:port][/db]`, `rediss://` with the `redis-tls`
    /// feature, `redis+unix:///path`) and sends the functions in `tasks`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// fn f(x: u8) -> u8 { x }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("f/v1", f)).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(url: &str, tasks: Tasks) -> RedisExecutorBuilder {
        RedisExecutorBuilder {
            url: url.to_owned(),
            tasks,
            tls: super::Tls::default(),
            cfg: Config::default(),
        }
    }

    /// Queues `f(arg)` for a worker; `f` must be in the executor's [`Tasks`].
    ///
    /// The argument is encoded as JSON here; the task is sent by the writer thread (with
    /// everything else submitted meanwhile, in one round trip). The one task of an
    /// otherwise idle client is sent from here instead, saving the writer's wake-up, under a
    /// 1 s timeout (2 s when the queue's TTL is refreshed with it, once a minute): past that
    /// it goes to the writer, so `submit` never waits longer on a frozen or cut-off Redis.
    /// If Redis is unreachable the writer retries until it is back, or until
    /// [`outage_limit`](RedisExecutorBuilder::outage_limit) fails the task.
    ///
    /// # Errors
    ///
    /// With `(f, arg)` handed back: [`SubmitError::Unregistered`] if `f` is not in the
    /// list, [`SubmitError::Rejected`] if `arg` does not serialize or is larger than
    /// [`max_payload_bytes`](RedisExecutorBuilder::max_payload_bytes),
    /// [`SubmitError::Shutdown`] after [`shutdown`](Self::shutdown).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// fn add_one(x: i64) -> i64 { x + 1 }
    /// fn unknown(x: i64) -> i64 { x }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("add_one/v1", add_one)).build()?;
    /// assert_eq!(ex.submit(add_one, 41)?.result()?, 42);
    /// let (f, arg) = ex.submit(unknown, 1).unwrap_err().into_inner(); // not registered
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit<F, A, R>(&self, f: F, arg: A) -> Result<Future<R>, SubmitError<(F, A)>>
    where
        F: PlainFn<A, R>,
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        self.submit_with(f, arg, TaskOptions::new())
    }

    /// [`submit`](Self::submit) with per-task settings.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, TaskOptions, Tasks};
    /// # use std::time::Duration;
    /// fn fetch(url: String) -> usize { url.len() }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("fetch/v1", fetch)).build()?;
    /// let opts = TaskOptions::new().time_limit(Duration::from_secs(10)).retries(2, Duration::from_secs(1));
    /// let n = ex.submit_with(fetch, "https://example.com".into(), opts)?.result()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit_with<F, A, R>(
        &self,
        f: F,
        arg: A,
        opts: TaskOptions,
    ) -> Result<Future<R>, SubmitError<(F, A)>>
    where
        F: PlainFn<A, R>,
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        let Some(name) = self.shared.tasks.name_of(f) else {
            return Err(SubmitError::Unregistered((f, arg)));
        };
        let args = match self.encode(&arg) {
            Ok(args) => args,
            Err(reason) => {
                return Err(SubmitError::Rejected {
                    task: (f, arg),
                    reason,
                })
            }
        };
        self.shared
            .send(name, false, args, opts, |reply| reply.and_then(decode_one))
            .map_err(|e| e.map_task(|()| (f, arg)))
    }

    /// Same as [`submit`](Self::submit) (Python's `Pool.apply_async`).
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// fn neg(x: i8) -> i8 { -x }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("neg", neg)).build()?;
    /// assert_eq!(ex.apply(neg, 1)?.result()?, -1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply<F, A, R>(&self, f: F, arg: A) -> Result<Future<R>, SubmitError<(F, A)>>
    where
        F: PlainFn<A, R>,
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        self.submit(f, arg)
    }

    fn encode<A: Serialize>(&self, arg: &A) -> Result<String, Arc<str>> {
        let json =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serde_json::to_string(arg)));
        match json {
            Ok(Ok(json)) if json.len() <= self.shared.cfg.max_payload => Ok(json),
            Ok(Ok(json)) => Err(format!(
                "the argument is {} bytes as JSON, above the limit of {} (max_payload_bytes)",
                json.len(),
                self.shared.cfg.max_payload
            )
            .into()),
            Ok(Err(e)) => Err(format!("the argument does not serialize: {e}").into()),
            Err(p) => {
                Err(format!("the argument's Serialize panicked: {}", panic_message(&*p)).into())
            }
        }
    }

    fn source<'a, F, A, R, I>(&self, f: F, items: I) -> Source<'a, R>
    where
        F: PlainFn<A, R>,
        A: Serialize + Send + 'a,
        R: DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        let shared = self.shared.clone();
        let name = self.shared.tasks.name_of(f).map(str::to_owned);
        let max = self.shared.cfg.max_payload;
        map::source(
            items.into_iter(),
            move |batch: map::Few<A>| -> Submitted<R> {
                let Some(name) = &name else {
                    return Err("the function is not registered in the executor's Tasks".into());
                };
                let n = batch.len();
                let args = match serde_json::to_string(&*batch) {
                    Ok(json) if json.len() <= max => json,
                    Ok(json) => {
                        return Err(format!(
                            "the chunk is {} bytes as JSON, above the limit of {max}",
                            json.len()
                        )
                        .into())
                    }
                    Err(e) => return Err(format!("an item does not serialize: {e}").into()),
                };
                shared
                    .send(name, true, args, TaskOptions::new(), move |reply| {
                        Ok(decode_chunk(reply, n))
                    })
                    .map_err(|e| e.to_string().into())
            },
        )
    }

    /// Applies `f` to every item on the workers, results in input order: Python's
    /// `executor.map`. Lazy and bounded like the local pools' `map` (256 tasks queued at a
    /// time by default); [`chunk_size`](Map::chunk_size) sends several items per queue
    /// entry, which is what makes cheap functions worth sending to another machine, and
    /// [`timeout`](Map::timeout) counts from this call.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// # use std::time::Duration;
    /// fn len(s: String) -> usize { s.len() }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("len/v1", len)).build()?;
    /// let words = vec!["a".to_string(), "bb".into()];
    /// for n in ex.map(len, words).timeout(Duration::from_secs(60)) {
    ///     println!("{}", n?);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map<'a, F, A, R, I>(&self, f: F, items: I) -> Map<'a, R>
    where
        F: PlainFn<A, R>,
        A: Serialize + Send + 'a,
        R: DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        Map::new(self.source(f, items), MAP_BUFFER)
    }

    /// Like [`map`](Self::map), in completion order (Python's `imap_unordered`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// fn sq(x: u32) -> u32 { x * x }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("sq", sq)).build()?;
    /// let mut all: Vec<u32> = ex.map_unordered(sq, 0..4).collect::<Result<_, _>>()?;
    /// all.sort();
    /// assert_eq!(all, [0, 1, 4, 9]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_unordered<'a, F, A, R, I>(&self, f: F, items: I) -> MapUnordered<'a, R>
    where
        F: PlainFn<A, R>,
        A: Serialize + Send + 'a,
        R: DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        MapUnordered::new(self.source(f, items), MAP_BUFFER)
    }

    /// Stops accepting tasks and waits until every task this client queued has completed
    /// (Python's `shutdown(wait=True)`). Tasks queued by other clients are not waited for.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// # use concurrent_futures::SubmitError;
    /// fn id(x: u8) -> u8 { x }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("id", id)).build()?;
    /// let fut = ex.submit(id, 1)?;
    /// ex.shutdown();
    /// assert!(fut.done());
    /// assert!(matches!(ex.submit(id, 2), Err(SubmitError::Shutdown(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(&self) {
        self.shutdown_with(true, false);
    }

    /// Python's `shutdown(wait, cancel_futures)`: with `cancel_futures`, every task this
    /// client queued that no worker has taken yet is removed from the queue and its future
    /// cancelled; with `wait`, returns once the others have completed. Without `wait` the
    /// reader thread still completes the futures still held as replies arrive, then exits;
    /// tasks not sent yet are still sent (call [`flush`](Self::flush) to wait for that).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// fn id(x: u8) -> u8 { x }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("id", id)).build()?;
    /// let fut = ex.submit(id, 1)?;
    /// ex.shutdown_with(true, true); // no worker running: cancelled, not waited for
    /// assert!(fut.cancelled());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown_with(&self, wait: bool, cancel_futures: bool) {
        let shared = &self.shared;
        let cancels: Vec<Arc<dyn Cancel>> = {
            let mut book = shared.book.lock();
            let first = !book.closed;
            book.closed = true;
            if first {
                let _ = shared.outbox.send(Outgoing::Stop);
            }
            if cancel_futures {
                book.waiting.values().map(|w| w.cancel.clone()).collect()
            } else {
                Vec::new()
            }
        };
        for c in cancels {
            c.cancel_now();
        }
        if wait {
            let mut book = shared.book.lock();
            while !book.waiting.is_empty() {
                shared.drained.wait(&mut book);
            }
            drop(book);
            let _ = shared.outbox.send(Outgoing::Stop);
            shared.wake_reader();
            let threads = std::mem::take(&mut *shared.threads.lock());
            for t in threads {
                if t.thread().id() != thread::current().id() {
                    let _ = t.join();
                }
            }
        } else {
            shared.wake_reader();
        }
    }

    /// Waits until every task submitted so far is in Redis (`submit` itself never waits on
    /// Redis): once it returns `Ok`, this process may exit and the tasks still run, and
    /// any process can [`attach`](Self::attach) to them by id. Dropping the executor
    /// flushes too.
    ///
    /// # Errors
    ///
    /// [`SetupError::Connect`] if Redis stayed out of reach for `outage_limit`: the tasks
    /// not sent failed with [`TaskError::Unreachable`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// fn resize(path: String) -> bool { true }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("resize", resize)).build()?;
    /// for path in ["a.png", "b.png"] {
    ///     let id = ex.submit(resize, path.to_string())?.task_id().unwrap();
    ///     println!("{path}: {id}");
    /// }
    /// ex.flush()?; // in Redis: safe to exit (RQ's enqueue, Celery's delay)
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush(&self) -> Result<(), SetupError> {
        let shared = &self.shared;
        let started = Instant::now();
        while !shared.unsent.wait_zero(Duration::from_millis(100)) {}
        match *shared.outage.lock() {
            Some(since) => Err(SetupError::Connect {
                address: shared.address.clone(),
                reason: format!(
                    "could not be reached for {:.1} s (outage_limit {:?}); the tasks not sent \
                     failed",
                    since.elapsed().as_secs_f64(),
                    shared.cfg.outage_limit
                ),
                source: Arc::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "flush gave up after {:.1} s",
                        started.elapsed().as_secs_f64()
                    ),
                )),
            }),
            None => Ok(()),
        }
    }

    /// A future for the task with this id, submitted by any process (RQ's
    /// `Job.fetch(id)`, Celery's `AsyncResult(id)`): it completes when the task does,
    /// pushed like any other (no polling), and works with `as_completed`, `wait`,
    /// callbacks and `.await`. A task that already ended completes it at once from its
    /// kept record. `R` must be the type the task returns; a wrong type fails the future
    /// with [`TaskError::Transport`].
    ///
    /// # Errors
    ///
    /// [`LookupError::Unknown`] if Redis has no such task (never submitted, its record
    /// expired after `result_ttl`, or lost); [`LookupError::Redis`] if Redis cannot be
    /// asked within `command_timeout`; [`LookupError::Shutdown`] after `shutdown`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, TaskId, Tasks};
    /// fn double(x: u32) -> u32 { x * 2 }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("double", double)).build()?;
    /// let id: TaskId = std::env::args().nth(1).unwrap().parse()?; // printed by the producer
    /// let fut = ex.attach::<u32>(&id)?;
    /// println!("{}", fut.result()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attach<R>(&self, id: &TaskId) -> Result<Future<R>, LookupError>
    where
        R: DeserializeOwned + Send + 'static,
    {
        let shared = &self.shared;
        // In the book before Redis hears of this client: an answer that follows at once is
        // delivered, not dropped.
        let (seq, remote) = shared
            .follow(id.clone(), |reply| reply.and_then(decode_one::<R>))
            .ok_or(LookupError::Shutdown)?;
        let started = Instant::now();
        let reply = {
            let mut control = shared.control_for_command(started)?;
            shared.run_script(&mut control.link, |con| {
                shared
                    .scripts
                    .attach
                    .key(shared.keys.result(id.as_str()))
                    .key(shared.keys.ids(id.as_str()))
                    .key(shared.keys.watch(id.as_str()))
                    .arg(id.as_str())
                    .arg(&shared.client_id)
                    .arg(wire::millis(shared.cfg.queue_ttl))
                    .invoke::<Value>(con)
            })
        };
        let parts = match reply {
            Ok(v) => wire::array(&v).map(<[Value]>::to_vec).unwrap_or_default(),
            Err(e) => {
                drop(shared.book.lock().remove(seq));
                shared.notify_if_drained();
                return Err(LookupError::Redis(SetupError::connect(
                    &shared.address,
                    started,
                )(e)));
            }
        };
        match parts.first().and_then(wire::text) {
            Some("done") => {
                remote.slot.end_send(None);
                let record = parts.get(1).map(wire::record).unwrap_or_default();
                shared.complete_from_record(seq, &record);
            }
            Some("waiting") if parts.get(1).and_then(wire::text).is_some() => {
                remote
                    .slot
                    .end_send(parts.get(1).and_then(wire::text).map(str::to_owned));
            }
            _ => {
                drop(shared.book.lock().remove(seq));
                shared.notify_if_drained();
                remote.slot.end_send(None);
                return Err(LookupError::Unknown(id.clone()));
            }
        }
        Ok(remote.future())
    }

    /// Where the task with this id stands: queued, running (on which worker, since when,
    /// which delivery), done, failed, dead-lettered, cancelled, or unknown (RQ's
    /// `job.get_status()`, Celery's `AsyncResult.state`). Any process can ask.
    ///
    /// # Errors
    ///
    /// [`SetupError::Connect`] if Redis cannot be asked within `command_timeout`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, TaskId, TaskStatus, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// let id: TaskId = "report-2026-12".parse()?;
    /// if let TaskStatus::Failed { error, .. } = ex.status(&id)? {
    ///     eprintln!("{id} failed: {error}");
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn status(&self, id: &TaskId) -> Result<TaskStatus, SetupError> {
        let shared = &self.shared;
        let started = Instant::now();
        let mut control = shared.control_for_command(started)?;
        let reply = shared
            .run_script(&mut control.link, |con| {
                shared
                    .scripts
                    .status
                    .key(shared.keys.result(id.as_str()))
                    .key(shared.keys.ids(id.as_str()))
                    .key(&shared.keys.queue)
                    .arg(id.as_str())
                    .arg(GROUP)
                    .arg(&shared.keys.running_prefix)
                    .invoke::<Value>(con)
            })
            .map_err(SetupError::connect(&shared.address, started))?;
        Ok(TaskStatus::parse(&reply))
    }

    /// Runs `f(arg)` on `schedule`, under `name`, until [`unschedule`](Self::unschedule)
    /// (Celery beat's `beat_schedule`, rq-scheduler's `cron`). The schedule lives in Redis:
    /// this process may exit, and the workers fire its ticks (every worker looks every
    /// 250 ms; a compare-and-set in one script lets exactly one fire each tick, however
    /// many run). Each tick's task has the id `<name>@<tick in ms since the epoch>`, for
    /// [`status`](Self::status) and [`attach`](Self::attach). Setting a name again
    /// replaces its schedule and task; the first tick is the first one after now. Ticks
    /// missed while no worker ran follow [`Schedule::missed`]. A schedule no worker has
    /// fired for `queue_ttl` (a week) expires.
    ///
    /// # Errors
    ///
    /// [`SetupError::Config`] for a name that is not 1 to 96 letters, digits and `_ . - :`,
    /// a function not in the `Tasks` list, or an argument that does not serialize;
    /// [`SetupError::Connect`] if Redis cannot be asked within `command_timeout`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Schedule, Tasks};
    /// # use std::time::Duration;
    /// fn cleanup(days: u32) -> usize { 0 }
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("cleanup", cleanup)).build()?;
    /// ex.schedule("nightly-cleanup", Schedule::cron("0 3 * * *", "Europe/Paris")?, cleanup, 30)?;
    /// ex.schedule("heartbeat", Schedule::every(Duration::from_secs(60)), cleanup, 0)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schedule<F, A, R>(
        &self,
        name: &str,
        schedule: Schedule,
        f: F,
        arg: A,
    ) -> Result<(), SetupError>
    where
        F: PlainFn<A, R>,
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        let shared = &self.shared;
        super::periodic::check_name(name).map_err(|e| SetupError::Config(e.to_string()))?;
        let Some(fn_name) = shared.tasks.name_of(f) else {
            return Err(SetupError::Config(
                "cannot schedule the task: its function is not registered in the executor's Tasks"
                    .into(),
            ));
        };
        let args = self
            .encode(&arg)
            .map_err(|why| SetupError::Config(format!("cannot schedule the task: {why}")))?;
        let mut fields = vec![
            ("v".to_owned(), FORMAT.to_owned()),
            ("fn".to_owned(), fn_name.to_owned()),
            ("c".to_owned(), "periodic".to_owned()),
            ("a".to_owned(), args),
        ];
        if shared.cfg.max_deliveries != wire::DEFAULT_TRIES {
            fields.push(("tries".into(), shared.cfg.max_deliveries.to_string()));
        }
        if shared.cfg.result_ttl != wire::DEFAULT_TTL {
            fields.push((
                "ttl".into(),
                wire::millis(shared.cfg.result_ttl).to_string(),
            ));
        }
        if let Some(limit) = shared.cfg.defaults.time_limit {
            fields.push(("limit".into(), wire::millis(limit).to_string()));
        }
        let now = wire::now_ms();
        let first = schedule
            .next_after(now, now)
            .ok_or_else(|| SetupError::Config("the schedule has no tick to come".into()))?;
        let spec = serde_json::to_string(&super::periodic::Spec { schedule, fields })
            .map_err(|e| SetupError::Config(e.to_string()))?;
        let started = Instant::now();
        let mut control = shared.control_for_command(started)?;
        let ttl = wire::millis(shared.cfg.queue_ttl);
        control
            .link
            .once(|con| {
                ::redis::pipe()
                    .atomic()
                    .cmd("HSET")
                    .arg(&shared.keys.periodic)
                    .arg(name)
                    .arg(&spec)
                    .ignore()
                    .cmd("ZADD")
                    .arg(&shared.keys.periodic_due)
                    .arg(first)
                    .arg(name)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&shared.keys.periodic)
                    .arg(ttl)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&shared.keys.periodic_due)
                    .arg(ttl)
                    .ignore()
                    .query::<()>(con)
            })
            .map_err(SetupError::connect(&shared.address, started))
    }

    /// Removes the periodic task `name`: no tick fires after this returns (a task already
    /// queued by an earlier tick still runs). `true` if it existed.
    ///
    /// # Errors
    ///
    /// [`SetupError::Connect`] if Redis cannot be asked within `command_timeout`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// ex.unschedule("nightly-cleanup")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unschedule(&self, name: &str) -> Result<bool, SetupError> {
        let shared = &self.shared;
        let started = Instant::now();
        let mut control = shared.control_for_command(started)?;
        let (removed, _): (i64, i64) = control
            .link
            .once(|con| {
                ::redis::pipe()
                    .atomic()
                    .cmd("HDEL")
                    .arg(&shared.keys.periodic)
                    .arg(name)
                    .cmd("ZREM")
                    .arg(&shared.keys.periodic_due)
                    .arg(name)
                    .query(con)
            })
            .map_err(SetupError::connect(&shared.address, started))?;
        Ok(removed == 1)
    }

    /// Cancels the task with this id, submitted by any process, if no worker has taken it
    /// yet: a queued task leaves the queue, a scheduled one the schedule, and it never
    /// runs (RQ's `Job.fetch(id).cancel()`, Celery's `AsyncResult(id).revoke()` for a task
    /// not started). `true` if it was cancelled now; `false` if a worker holds it, it
    /// ended, or there is no such task. Every future attached to it, in any process,
    /// completes as cancelled.
    ///
    /// # Errors
    ///
    /// [`SetupError::Connect`] if Redis cannot be asked within `command_timeout`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, TaskId, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// let id: TaskId = "report-2026-12".parse()?;
    /// if ex.cancel(&id)? {
    ///     println!("{id} will not run");
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(&self, id: &TaskId) -> Result<bool, SetupError> {
        let shared = &self.shared;
        let started = Instant::now();
        let cancelled = {
            let mut control = shared.control_for_command(started)?;
            shared
                .run_script(&mut control.link, |con| {
                    shared.cancel_cmd(id).query::<i64>(con)
                })
                .map_err(SetupError::connect(&shared.address, started))?
                == 1
        };
        if cancelled {
            // This client's own futures of the task (Redis tells only the other clients).
            let taken = shared.book.lock().remove_task(id);
            shared.notify_if_drained();
            for w in taken {
                w.slot.end_send(None);
                (w.complete)(Err(TaskError::Cancelled));
            }
        }
        Ok(cancelled)
    }

    /// How many of this client's tasks have not completed yet.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// assert_eq!(ex.pending(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pending(&self) -> usize {
        self.shared.book.lock().waiting.len()
    }

    /// This client's id: its reply stream is `{namespace}:reply:<id>`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// println!("{}", ex.client_id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// What the queue holds now: queued and running tasks, live workers, dead letters
    /// (like `rq info`).
    ///
    /// # Errors
    ///
    /// [`SetupError::Connect`] if Redis cannot be asked.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
    /// let info = ex.info()?;
    /// println!("{} queued, {} running", info.queued, info.running.len());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn info(&self) -> Result<QueueInfo, SetupError> {
        // A connection of its own, bounded by `SETUP_TIMEOUT`: never the submitters' one.
        let shared = &self.shared;
        let (mut con, started) =
            super::setup_connection(&shared.redis, &shared.address, shared.cfg.setup_timeout)?;
        info::read(&mut con, &shared.keys).map_err(SetupError::connect(&shared.address, started))
    }
}

impl Drop for RedisExecutor {
    /// Sends every task submitted (waiting at most about `outage_limit` for an
    /// unreachable Redis), then returns without waiting for results: the tasks are in
    /// Redis and run whether or not this process is there. Futures still held complete as
    /// usual; tasks whose futures were dropped keep their records for `result_ttl`.
    fn drop(&mut self) {
        let _ = self.flush();
        self.shutdown_with(false, false);
    }
}

impl fmt::Debug for RedisExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisExecutor")
            .field("client_id", &self.shared.client_id)
            .field("namespace", &self.shared.cfg.namespace)
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_always_have_one_result_per_item() {
        let ok: Chunk<u32> = decode_chunk(Ok(br#"[{"ok":1},{"err":"panic","msg":"x"}]"#), 2);
        assert_eq!(ok[0].as_ref().unwrap(), &1);
        assert!(matches!(&ok[1], Err(TaskError::Panicked(m)) if &**m == "x"));
        for bad in [
            &b"[{\"ok\":1}]"[..],
            b"{}",
            b"[1,2]",
            b"[{\"ok\":\"s\"},{}]",
        ] {
            let got: Chunk<u32> = decode_chunk(Ok(bad), 2);
            assert_eq!(got.len(), 2, "{}", String::from_utf8_lossy(bad));
            assert!(got.iter().any(Result::is_err));
        }
        let lost: Chunk<u32> = decode_chunk(Err(TaskError::WorkerLost("3".into())), 3);
        assert_eq!(lost.len(), 3);
    }

    #[test]
    fn deep_results_are_refused_not_overflowing() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let got: Result<Vec<serde_json::Value>, _> = decode_one(deep.as_bytes());
        assert!(got.is_err());
    }
}
