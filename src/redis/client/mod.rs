//! [`RedisExecutor`]: queues tasks on a Redis stream and completes their futures from the
//! replies that workers append to this client's own reply stream.
//!
//! Three threads per executor: the *writer* sends queued tasks in pipelined batches (one
//! round trip for everything submitted meanwhile), the *reader* blocks on the reply stream
//! (`XREAD BLOCK`, its own connection) and completes futures as replies arrive, and the
//! callback pool runs done-callbacks so that a callback that waits on another task of this
//! executor never stalls the reader.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::SetupError;
use super::conn::Link;
use super::id::TaskId;
use super::info::{self, QueueInfo};
use super::tasks::Tasks;
use super::wire::{Keys, Scripts};
use crate::error::{SubmitError, TaskError, panic_message};
use crate::executor::{Executor, PlainFn};
use crate::future::{Future, Hooked};
use crate::map::{self, Map, MapUnordered, Source, Submitted};

mod book;
mod builder;
mod cancel;
mod dead;
mod durable;
mod options;
mod reader;
mod writer;

pub use self::builder::RedisExecutorBuilder;
pub use crate::options::TaskOptions;

use self::book::{Book, Cancel, Complete, Remote, Slot, SlotState, UnsentCount, Waiting, Withdraw};
use self::builder::Config;
use self::reader::{decode_chunk, decode_one};
use self::writer::{Control, Outgoing};

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

/// How many map chunks may be queued at once by default, with a fixed `chunk_size`: one
/// item per task needs many in flight to fill the writer's pipelines.
const MAP_BUFFER: usize = 256;
/// How many map chunks may be queued at once by default, with the adaptive chunk size:
/// chunks grow to a few milliseconds of work each, and the size is measured on the chunks
/// that come back, so a long queue only delays the measure (measured on 50,000 no-op
/// items, 2 workers: 28-32 ms with 16, 37-38 ms with 32, 40-160 ms with 256). Twice 8 task
/// slots; `buffer_size` for more.
const ADAPTIVE_MAP_BUFFER: usize = 16;
/// The workers' time a map chunk is sized to: a task costs a Redis round trip (about
/// 100 µs of the pool's time with two workers), so chunks are larger than on the local
/// pools (2 ms) to keep that share small.
const MAP_CHUNK_TIME: Duration = Duration::from_millis(5);

/// The longest error message kept from a reply.
const MAX_MESSAGE: usize = 64 * 1024;

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
/// `running()` is told by the worker: it turns true once a worker has run the task for
/// 5 ms (one round trip later, in every process that follows the task), so a task shorter
/// than that goes from pending to done as a local one does between two polls; a
/// `cancel()` that finds the task taken turns it true at once. `done()`, results,
/// callbacks and waits are exact.
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
    callbacks: Arc<crate::callbacks::CallbackPool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
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
        let remote: Arc<Remote<T>> = Hooked::new(Withdraw {
            slot: slot.clone(),
            shared: Arc::downgrade(self),
        });
        let r = remote.clone();
        let complete: Complete = Box::new(move |reply| {
            let outcome = decode(reply);
            let fut = r.future();
            // Cancelled by another future or process: `cancelled()` here too, as in Python.
            if matches!(outcome, Err(TaskError::Cancelled)) && r.cancel_promise(&fut) {
                return;
            }
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

    fn callback_sink(&self) -> crate::context::CallbackSink {
        self.callbacks.sink()
    }
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
                });
            }
        };
        // The submitter's span, from submit to the result: the worker's span continues its
        // trace through the entry's `tp` field when a propagator is set.
        #[cfg(feature = "tracing")]
        let span = tracing::info_span!(
            target: "concurrent_futures::redis",
            "task",
            executor = "redis",
            function = name,
            task = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        #[cfg(feature = "tracing")]
        let trace = crate::propagate::inject(&span);
        #[cfg(not(feature = "tracing"))]
        let trace = None;
        #[cfg(feature = "tracing")]
        let ended = span.clone();
        let fut = self
            .shared
            .send(name, false, args, opts, trace, move |reply| {
                let result = reply.and_then(decode_one);
                #[cfg(feature = "tracing")]
                ended.record(
                    "outcome",
                    match &result {
                        Ok(_) => "ok",
                        Err(e) => crate::trace::outcome_of(e),
                    },
                );
                result
            })
            .map_err(|e| e.map_task(|()| (f, arg)))?;
        #[cfg(feature = "tracing")]
        if let Some(id) = fut.task_id() {
            span.record("task", id.as_str());
        }
        Ok(fut)
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
        let limit = Arc::new(map::Limit::new(max).with_target(MAP_CHUNK_TIME));
        let sizes = limit.clone();
        map::source_limited(
            items.into_iter(),
            move |batch: map::Few<A>| -> Submitted<R> {
                let Some(name) = &name else {
                    return Err("the function is not registered in the executor's Tasks".into());
                };
                let n = batch.len();
                let args = serde_json::to_string(&*batch);
                if let Ok(json) = &args {
                    sizes.saw(n, json.len());
                }
                let args = match args {
                    Ok(json) if json.len() <= max => json,
                    Ok(json) => {
                        return Err(format!(
                            "the chunk is {} bytes as JSON, above the limit of {max}",
                            json.len()
                        )
                        .into());
                    }
                    Err(e) => return Err(format!("an item does not serialize: {e}").into()),
                };
                let sizes = sizes.clone();
                shared
                    .send(name, true, args, TaskOptions::new(), None, move |reply| {
                        // Results count too: a chunk's reply has the same limit.
                        if let Ok(body) = reply {
                            sizes.saw(n, body.len());
                        }
                        Ok(decode_chunk(reply, n))
                    })
                    .map_err(|e| e.to_string().into())
            },
            limit,
        )
    }

    /// Applies `f` to every item on the workers, results in input order: Python's
    /// `executor.map`. Lazy and bounded like the local pools' `map`. By default each queue
    /// entry carries a chunk of items whose size adapts to what comes back: one item at
    /// first, then as many as make about 5 ms of the workers' time, so that a cheap function
    /// is worth sending to another machine and a slow one is spread one item per task (16
    /// chunks in flight; with more than 8 task slots across the workers, raise
    /// [`buffer_size`](Map::buffer_size) to twice the slots). A fixed
    /// [`chunk_size`](Map::chunk_size) keeps 256 tasks in flight. [`timeout`](Map::timeout)
    /// counts from this call.
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
        Map::new(self.source(f, items), ADAPTIVE_MAP_BUFFER).with_fixed_buffer(MAP_BUFFER)
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
        MapUnordered::new(self.source(f, items), ADAPTIVE_MAP_BUFFER).with_fixed_buffer(MAP_BUFFER)
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

    /// The namespace of this executor's keys (its [`namespace`](RedisExecutorBuilder::namespace)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use concurrent_futures::redis::{RedisExecutor, Tasks};
    /// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).namespace("img").build()?;
    /// assert_eq!(ex.namespace(), "img");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn namespace(&self) -> &str {
        &self.shared.cfg.namespace
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
        let (mut con, fail) = self.own_connection()?;
        info::read(&mut con, &self.shared.keys).map_err(fail)
    }

    /// A connection of its own for an inspection or an operator's command, bounded by the
    /// setup timeout (never the submitters' one), and what its failures become.
    pub(super) fn own_connection(
        &self,
    ) -> Result<
        (
            ::redis::Connection,
            impl Fn(::redis::RedisError) -> SetupError + '_,
        ),
        SetupError,
    > {
        let shared = &self.shared;
        let (con, started) =
            super::setup_connection(&shared.redis, &shared.address, shared.cfg.setup_timeout)?;
        Ok((con, SetupError::connect(&shared.address, started)))
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

/// The same API as the local pools, for generic code (see [`Executor`](crate::Executor)).
impl Executor for RedisExecutor {
    fn apply_with<F, A, R>(
        &self,
        f: F,
        arg: A,
        opts: TaskOptions,
    ) -> Result<Future<R>, SubmitError<(F, A)>>
    where
        F: PlainFn<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        crate::executor::require_plain::<F>();
        self.submit_with(f, arg, opts)
    }

    fn map_fn<'a, F, A, R, I>(&self, f: F, items: I) -> Map<'a, R>
    where
        F: PlainFn<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        crate::executor::require_plain::<F>();
        self.map(f, items)
    }

    fn map_unordered_fn<'a, F, A, R, I>(&self, f: F, items: I) -> MapUnordered<'a, R>
    where
        F: PlainFn<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        crate::executor::require_plain::<F>();
        self.map_unordered(f, items)
    }

    fn shutdown(&self) {
        RedisExecutor::shutdown(self);
    }
}
