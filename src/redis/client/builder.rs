//! Settings: [`TaskOptions`] per task, [`RedisExecutorBuilder`] per executor, checked and
//! connected by `build`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::{self};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::book::{Book, UnsentCount};
use super::reader::reader;
use super::writer::{Control, writer};
use super::{RedisExecutor, Shared};
use crate::options::TaskOptions;
use crate::redis::SetupError;
use crate::redis::conn::Link;
use crate::redis::host;
use crate::redis::tasks::Tasks;
use crate::redis::wire::{self, Keys, Scripts};

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
    pub(super) url: String,
    pub(super) tasks: Tasks,
    pub(super) cfg: Config,
    pub(in crate::redis) tls: crate::redis::Tls,
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
            setup_timeout: crate::redis::SETUP_TIMEOUT,
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
    /// [`TaskError::Unreachable`](crate::TaskError::Unreachable), naming the address and how long
    /// the client tried, and so does every task submitted while Redis stays out of reach. The
    /// outage is logged when it starts and when it ends. A restart of Redis shorter than this loses
    /// nothing.
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
    /// and past this many `submit` refuses new ones with
    /// [`SubmitError::Full`](crate::SubmitError::Full), handing the function and argument back,
    /// rather than letting the queue grow without bound.
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

    /// How long [`Future::cancel`](crate::Future::cancel), [`RedisExecutor::attach`] and
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
    /// [`SETUP_TIMEOUT`](crate::redis::SETUP_TIMEOUT), 10 s).
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
    /// [`TaskError::WorkerLost`](crate::TaskError::WorkerLost). At least 1, at most 100.
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
    /// MiB). Larger arguments are refused at submit
    /// ([`SubmitError::Rejected`](crate::SubmitError::Rejected)); larger results fail their task
    /// with [`TaskError::Transport`](crate::TaskError::Transport). Workers have their own limit.
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
        let (redis, address) = crate::redis::open(&self.url, &self.cfg.namespace, &self.tls)?;
        let keys = Keys::new(&self.cfg.namespace);
        let (mut setup, started) =
            crate::redis::setup_connection(&redis, &address, self.cfg.setup_timeout)?;
        crate::redis::ensure_group(&mut setup, &keys)
            .map_err(SetupError::connect(&address, started))?;
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
            host::hostname(),
            std::process::id(),
            host::random() as u32
        );
        let callbacks = crate::callbacks::CallbackPool::new("RedisExecutor-callbacks".into());
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
