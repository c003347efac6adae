//! Public error types: why a future has no value, and why an operation was refused.
//!
//! One type per operation, in the crossbeam manner: an error that refuses an input hands it
//! back ([`SubmitError::into_inner`], [`InvalidStateError::into_inner`], the handle inside
//! [`ResultTimeoutError::Timeout`]), so nothing is lost.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// Why a [`Future`](crate::Future) holds no value.
///
/// Python raises these as exceptions from `Future.result()`; here they are a value.
/// `TaskError` is cheap to clone (panic messages and errors are reference counted), so it can
/// be read from a shared handle and from callbacks.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{TaskError, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new();
/// let fut = pool.submit(|| -> u32 { panic!("bad input") })?;
/// match fut.result() {
///     Err(TaskError::Panicked(message)) => assert_eq!(&*message, "bad input"),
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The future was cancelled before its task started (Python's `CancelledError`).
    #[error("task was cancelled")]
    Cancelled,
    /// The task panicked; the panic is kept (the worker lives on). [`Panic`] dereferences
    /// to the panic's own message, the same on every executor; a worker process adds its
    /// pid, thread and source location, shown in `Display` and readable on their own.
    #[error("task panicked: {0}")]
    Panicked(Panic),
    /// The task's own error: a [`Promise`](crate::Promise) failed with it (Python's
    /// `set_exception`), or a task returned it ([`Future::result_flat`](crate::Future::result_flat)).
    /// Shown as that error, whose own causes follow as `source()`; reach the error itself
    /// with [`failure`](Self::failure) to downcast it.
    #[error(transparent)]
    Failed(Arc<dyn std::error::Error + Send + Sync>),
    /// The executor broke before the task could run: an initializer failed
    /// (Python's `BrokenExecutor`).
    #[error("executor is broken: {0}")]
    BrokenExecutor(Arc<str>),
    /// The [`Promise`](crate::Promise) was dropped without a result.
    #[error("promise dropped without a result")]
    Abandoned,
    /// The worker process running the task died (a crash, `abort`, `exit`, a kill, the OOM
    /// killer); the text says how. Only this task fails; the pool replaces the worker.
    #[error("worker process died: {0}")]
    WorkerDied(Arc<str>),
    /// The task ran past its time limit; its worker process was killed and replaced.
    #[error("task timed out")]
    TimedOut,
    /// The task or its result could not be carried to or from the worker that runs it
    /// (serialization, a corrupt or oversized frame from a worker process, a malformed reply
    /// from Redis). The text says which.
    #[error("task could not be carried to or from its worker: {0}")]
    Transport(Arc<str>),
    /// A Redis task was delivered to workers as many times as its `max_deliveries` allows
    /// and none of them finished it: each died, was killed or lost its lease. The text says
    /// how many deliveries were made.
    #[error("worker lost: {0}")]
    WorkerLost(Arc<str>),
    /// The task was refused without running: a Redis worker got an unknown task name, an
    /// argument that does not decode as the task's type, or an oversized or malformed entry
    /// (the entry is kept in the dead-letter stream); or a process pool was handed a closure
    /// that captures data through the [`Executor`](crate::Executor) trait.
    #[error("task rejected: {0}")]
    Rejected(Arc<str>),
    /// The value was moved out already: the future was polled to completion by reference
    /// (`block_on(&mut fut)`, `(&mut fut).await`, a `select!` arm), so the value went to that
    /// poll, and `result()` or a second poll finds nothing left. A misuse, reported as a
    /// value rather than a panic.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::{TaskError, ThreadPoolExecutor};
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// let mut fut = pool.submit(|| 7)?;
    /// assert_eq!(futures::executor::block_on(&mut fut)?, 7); // the value goes here
    /// assert_eq!(fut.result(), Err(TaskError::Taken));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[error(
        "the value was already taken: the future was polled to completion by reference, and its value went to that poll"
    )]
    Taken,
    /// The executor's Redis could not be reached for longer than its `outage_limit`, so
    /// the task's fate is unknown: the text names the address and how long the client
    /// tried. The task may still run if Redis comes back; its result is then dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = concurrent_futures::TaskError::Unreachable("Redis at 10.0.0.5:6379".into());
    /// assert_eq!(err.to_string(), "cannot reach the executor's backend: Redis at 10.0.0.5:6379");
    /// ```
    #[error("cannot reach the executor's backend: {0}")]
    Unreachable(Arc<str>),
    /// The executor's backend lost the task: Redis holds it neither queued, nor taken by a
    /// worker, nor answered (Redis restarted without its data, failed over to a replica
    /// that never received it, or was flushed). The task may have run; submit it again if
    /// running it twice is safe.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = concurrent_futures::TaskError::Lost("gone after a restart".into());
    /// assert_eq!(err.to_string(), "the backend lost the task: gone after a restart");
    /// ```
    #[error("the backend lost the task: {0}")]
    Lost(Arc<str>),
}

impl TaskError {
    /// Returns `true` for [`TaskError::Cancelled`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(concurrent_futures::TaskError::Cancelled.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }

    /// Returns `true` if the task panicked.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = concurrent_futures::TaskError::Panicked("boom".into());
    /// assert!(err.is_panic());
    /// ```
    pub fn is_panic(&self) -> bool {
        matches!(self, TaskError::Panicked(_))
    }

    /// The panic message, if the task panicked.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = concurrent_futures::TaskError::Panicked("boom".into());
    /// assert_eq!(err.panic_message(), Some("boom"));
    /// ```
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            TaskError::Panicked(panic) => Some(panic.message()),
            _ => None,
        }
    }

    /// The task's own error, for [`TaskError::Failed`]: downcast it to the type the task
    /// returned.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// let fut = pool.submit(|| "x".parse::<u8>())?;
    /// let err = fut.result_flat().unwrap_err();
    /// let parse = err.failure().and_then(|e| e.downcast_ref::<std::num::ParseIntError>());
    /// assert!(parse.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn failure(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            TaskError::Failed(err) => Some(&**err),
            _ => None,
        }
    }

    /// Builds the message of a caught panic payload, as the standard library prints it.
    pub(crate) fn from_panic(payload: Box<dyn Any + Send>) -> TaskError {
        TaskError::Panicked(panic_message(&*payload).into())
    }
}

/// A task's panic: the message it panicked with and, where the task ran in a worker process,
/// where that was.
///
/// It dereferences to the message (`&*panic == "bad input"`), and
/// [`TaskError::panic_message`] gives the same text on every executor, so code that
/// switches between threads and processes, or matches on the message, keeps working.
/// `Display` adds the origin when there is one: `bad input (worker process 5940, thread
/// 'main', at src/main.rs:12:5)`.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Panic, TaskError, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new();
/// let err = pool.submit(|| -> u8 { panic!("bad input") })?.result().unwrap_err();
/// assert_eq!(err.panic_message(), Some("bad input"));
/// if let TaskError::Panicked(panic) = &err {
///     assert_eq!(&**panic, "bad input");
///     assert_eq!(panic.pid(), None); // it ran on a thread of this process
/// }
/// let made = Panic::from("boom");
/// assert_eq!(made.to_string(), "boom");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Panic {
    message: Arc<str>,
    origin: Option<Arc<Origin>>,
}

/// Where a panic in a worker process happened.
#[derive(Debug)]
struct Origin {
    pid: u32,
    thread: Box<str>,
    location: Box<str>,
}

impl Panic {
    /// A panic reported by worker process `pid`, on `thread`, at `location` (`file:line:col`,
    /// or empty when unknown).
    #[cfg(all(unix, feature = "process"))]
    pub(crate) fn in_process(message: &str, pid: u32, thread: &str, location: &str) -> Panic {
        Panic {
            message: message.into(),
            origin: Some(Arc::new(Origin {
                pid,
                thread: thread.into(),
                location: location.into(),
            })),
        }
    }

    /// The message the task panicked with (`panic!("...")`'s text), nothing added.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(concurrent_futures::Panic::from("boom").message(), "boom");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The worker process the task panicked in, or `None` when it ran on a thread of this
    /// process.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(concurrent_futures::Panic::from("boom").pid(), None);
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.origin.as_ref().map(|o| o.pid)
    }

    /// The name of the worker process's thread that panicked, when known.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(concurrent_futures::Panic::from("boom").thread(), None);
    /// ```
    pub fn thread(&self) -> Option<&str> {
        self.origin.as_ref().map(|o| &*o.thread)
    }

    /// Where in the source the worker process panicked (`file:line:column`), when known.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(concurrent_futures::Panic::from("boom").location(), None);
    /// ```
    pub fn location(&self) -> Option<&str> {
        self.origin
            .as_ref()
            .map(|o| &*o.location)
            .filter(|l| !l.is_empty())
    }
}

impl std::ops::Deref for Panic {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(o) = &self.origin {
            write!(f, " (worker process {}, thread '{}'", o.pid, o.thread)?;
            if !o.location.is_empty() {
                write!(f, ", at {}", o.location)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            None => fmt::Debug::fmt(&*self.message, f),
            Some(o) => f
                .debug_struct("Panic")
                .field("message", &self.message)
                .field("pid", &o.pid)
                .field("thread", &o.thread)
                .field("location", &o.location)
                .finish(),
        }
    }
}

impl PartialEq for Panic {
    /// Compares the messages only: the same panic on threads and on processes is equal.
    fn eq(&self, other: &Panic) -> bool {
        self.message == other.message
    }
}

impl Eq for Panic {}

impl PartialEq<str> for Panic {
    fn eq(&self, other: &str) -> bool {
        &*self.message == other
    }
}

impl PartialEq<&str> for Panic {
    fn eq(&self, other: &&str) -> bool {
        &*self.message == *other
    }
}

impl From<&str> for Panic {
    fn from(message: &str) -> Panic {
        Panic {
            message: message.into(),
            origin: None,
        }
    }
}

impl From<String> for Panic {
    fn from(message: String) -> Panic {
        Panic {
            message: message.into(),
            origin: None,
        }
    }
}

impl From<Arc<str>> for Panic {
    fn from(message: Arc<str>) -> Panic {
        Panic {
            message,
            origin: None,
        }
    }
}

/// The text of a panic payload: the `&str` or `String` it carries, else a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "Box<dyn Any>"
    }
}

/// A task was refused; the closure comes back through [`into_inner`](Self::into_inner).
///
/// # Examples
///
/// ```
/// use concurrent_futures::{SubmitError, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new();
/// pool.shutdown();
/// let err = pool.submit(|| 42).unwrap_err();
/// assert!(matches!(err, SubmitError::Shutdown(_)));
/// let task = err.into_inner();
/// assert_eq!(task(), 42);
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError<F> {
    /// The executor was shut down (Python raises `RuntimeError`).
    #[error("cannot schedule new tasks after shutdown")]
    Shutdown(F),
    /// The executor is broken, for instance because an initializer failed
    /// (Python's `BrokenThreadPool`).
    #[error("cannot schedule new tasks: executor is broken: {reason}")]
    Broken {
        /// The refused task.
        task: F,
        /// Why the executor broke.
        reason: Arc<str>,
    },
    /// No worker thread could be started, and none is running to take the task.
    #[error("cannot schedule new tasks: no worker thread could be started")]
    Spawn {
        /// The refused task.
        task: F,
        /// The operating system's error (also the error's `source()`).
        #[source]
        error: Arc<std::io::Error>,
    },
    /// A Redis executor was handed a function that its `Tasks` list does not name, so no
    /// worker could know what to run.
    #[error("cannot schedule the task: its function is not registered in the executor's Tasks")]
    Unregistered(F),
    /// The task's argument cannot be sent: it does not serialize, or it is larger than the
    /// executor's payload limit.
    #[error("cannot schedule the task: {reason}")]
    Rejected {
        /// The refused task.
        task: F,
        /// Why it cannot be sent.
        reason: Arc<str>,
    },
    /// The executor's local queue is full: a Redis executor holds at most
    /// `max_unsent` tasks that Redis has not taken yet (it is out of reach, or slower than
    /// the submits). Nothing was queued; try again later, or slow down.
    #[error("cannot schedule the task now: {reason}")]
    Full {
        /// The refused task.
        task: F,
        /// How many tasks wait, for whom, and since when.
        reason: Arc<str>,
    },
    /// The task's [`TaskOptions`](crate::TaskOptions) carry a setting this executor cannot
    /// honour (a local pool has no retries, chosen ids or delays: those are the Redis
    /// executor's), so it was refused rather than run without it.
    #[error(
        "cannot schedule the task: this executor does not support the per-task option `{option}` \
         (only the Redis executor does)"
    )]
    Unsupported {
        /// The refused task.
        task: F,
        /// The setting's method on `TaskOptions`: `"retries"`, `"id"` or `"delay"`.
        option: &'static str,
    },
}

impl<F> SubmitError<F> {
    /// Returns the task that was not scheduled.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// pool.shutdown();
    /// let task = pool.submit(|| "hello").unwrap_err().into_inner();
    /// assert_eq!(task(), "hello");
    /// ```
    pub fn into_inner(self) -> F {
        self.into_parts().0
    }

    /// The same error without the task. An error that carries a closure is `Sync` only if
    /// the closure is; this one always is, so `?` can turn it into a
    /// `Box<dyn Error + Send + Sync>` or an `anyhow::Error`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::{SubmitError, ThreadPoolExecutor};
    /// use std::cell::Cell;
    ///
    /// fn run(pool: &ThreadPoolExecutor) -> Result<u8, Box<dyn std::error::Error + Send + Sync>> {
    ///     let not_sync = Cell::new(7); // a closure holding it is Send but not Sync
    ///     let fut = pool.submit(move || not_sync.get()).map_err(SubmitError::without_task)?;
    ///     Ok(fut.result()?)
    /// }
    ///
    /// let pool = ThreadPoolExecutor::new();
    /// assert_eq!(run(&pool).unwrap(), 7);
    /// pool.shutdown();
    /// assert_eq!(run(&pool).unwrap_err().to_string(), "cannot schedule new tasks after shutdown");
    /// ```
    pub fn without_task(self) -> SubmitError<()> {
        self.into_parts().1
    }

    /// The same error around `f(task)`.
    pub(crate) fn map_task<G>(self, f: impl FnOnce(F) -> G) -> SubmitError<G> {
        let (task, err) = self.into_parts();
        let task = f(task);
        match err {
            SubmitError::Shutdown(()) => SubmitError::Shutdown(task),
            SubmitError::Broken { reason, .. } => SubmitError::Broken { task, reason },
            SubmitError::Spawn { error, .. } => SubmitError::Spawn { task, error },
            SubmitError::Unregistered(()) => SubmitError::Unregistered(task),
            SubmitError::Rejected { reason, .. } => SubmitError::Rejected { task, reason },
            SubmitError::Full { reason, .. } => SubmitError::Full { task, reason },
            SubmitError::Unsupported { option, .. } => SubmitError::Unsupported { task, option },
        }
    }

    /// Splits the error into the refused task and the same error without it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new();
    /// pool.shutdown();
    /// let (task, err) = pool.submit(|| 1).unwrap_err().into_parts();
    /// assert_eq!(task(), 1);
    /// assert_eq!(err.to_string(), "cannot schedule new tasks after shutdown");
    /// ```
    pub fn into_parts(self) -> (F, SubmitError<()>) {
        match self {
            SubmitError::Shutdown(task) => (task, SubmitError::Shutdown(())),
            SubmitError::Broken { task, reason } => {
                (task, SubmitError::Broken { task: (), reason })
            }
            SubmitError::Spawn { task, error } => (task, SubmitError::Spawn { task: (), error }),
            SubmitError::Unregistered(task) => (task, SubmitError::Unregistered(())),
            SubmitError::Rejected { task, reason } => {
                (task, SubmitError::Rejected { task: (), reason })
            }
            SubmitError::Full { task, reason } => (task, SubmitError::Full { task: (), reason }),
            SubmitError::Unsupported { task, option } => {
                (task, SubmitError::Unsupported { task: (), option })
            }
        }
    }
}

impl<F> fmt::Debug for SubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::Shutdown(_) => f.write_str("Shutdown(..)"),
            SubmitError::Broken { reason, .. } => f
                .debug_struct("Broken")
                .field("reason", reason)
                .finish_non_exhaustive(),
            SubmitError::Spawn { error, .. } => f
                .debug_struct("Spawn")
                .field("error", error)
                .finish_non_exhaustive(),
            SubmitError::Unregistered(_) => f.write_str("Unregistered(..)"),
            SubmitError::Rejected { reason, .. } => f
                .debug_struct("Rejected")
                .field("reason", reason)
                .finish_non_exhaustive(),
            SubmitError::Full { reason, .. } => f
                .debug_struct("Full")
                .field("reason", reason)
                .finish_non_exhaustive(),
            SubmitError::Unsupported { option, .. } => f
                .debug_struct("Unsupported")
                .field("option", option)
                .finish_non_exhaustive(),
        }
    }
}

/// A builder setting was refused.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{BuildError, ThreadPoolExecutor};
///
/// let err = ThreadPoolExecutor::builder().max_workers(0).build().unwrap_err();
/// assert!(matches!(err, BuildError::ZeroWorkers));
/// ```
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `max_workers` was 0 (Python raises `ValueError`).
    #[error("max_workers must be greater than 0")]
    ZeroWorkers,
    /// A process pool was built without [`init`](crate::init) having run at the start of
    /// `main`: its workers, which re-run this program, would run `main` again.
    #[error("call concurrent_futures::init() first thing in main before building a process pool")]
    NotInitialized,
    /// The first worker process could not be started or failed its handshake.
    #[error("worker process failed to start: {0}")]
    WorkerStart(String),
    /// The thread name prefix holds a NUL byte, which no thread name may contain.
    #[error("thread name prefix contains a NUL byte")]
    InvalidThreadName,
    /// The thread that enforces a thread pool's
    /// [`time_limit`](crate::ThreadPoolBuilder::time_limit) could not be started.
    #[error("cannot start the time limit's watchdog thread: {0}")]
    ThreadStart(String),
    /// [`max_frame_bytes`](crate::ProcessPoolBuilder::max_frame_bytes) was below the
    /// smallest usable frame, [`MIN_FRAME_BYTES`](crate::MIN_FRAME_BYTES).
    #[error("max_frame_bytes is {bytes}, below the minimum of {minimum}")]
    FrameLimit {
        /// The limit asked for.
        bytes: usize,
        /// The smallest accepted.
        minimum: usize,
    },
}

/// The variant's name, then what to do: a `main` that returns `Result<(), Box<dyn Error>>`
/// prints an error with `Debug`, and `Error: NotInitialized` alone does not say that
/// `init()` is missing.
///
/// # Examples
///
/// ```
/// use concurrent_futures::BuildError;
/// let shown = format!("{:?}", BuildError::NotInitialized);
/// assert!(shown.starts_with("NotInitialized: call concurrent_futures::init()"));
/// ```
impl fmt::Debug for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            BuildError::ZeroWorkers => "ZeroWorkers",
            BuildError::NotInitialized => "NotInitialized",
            BuildError::WorkerStart(_) => "WorkerStart",
            BuildError::InvalidThreadName => "InvalidThreadName",
            BuildError::ThreadStart(_) => "ThreadStart",
            BuildError::FrameLimit { .. } => "FrameLimit",
        };
        write!(f, "{name}: {self}")
    }
}

/// A deadline passed: returned by timed iterators ([`map`](crate::ThreadPoolExecutor::map),
/// [`as_completed`](crate::as_completed)).
///
/// # Examples
///
/// ```
/// assert_eq!(concurrent_futures::TimeoutError.to_string(), "timed out");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out")]
pub struct TimeoutError;

/// Why an item of a [`map`](crate::ThreadPoolExecutor::map) has no value.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{MapError, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new();
/// let results: Vec<_> = pool
///     .map(|x: i32| if x == 2 { panic!("two") } else { x }, 1..=3)
///     .collect();
/// assert_eq!(results[0], Ok(1));
/// assert!(matches!(&results[1], Err(MapError::Task(e)) if e.is_panic()));
/// assert_eq!(results[2], Ok(3)); // one failure does not cancel the rest
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The item's task failed; the other items are unaffected.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The map's deadline passed; the items not yet done were cancelled and this is the last
    /// item the iterator yields.
    #[error("map timed out")]
    Timeout,
    /// The executor refused the item's task (shut down or broken) while the map was running.
    #[error("executor refused the task: {0}")]
    Refused(Arc<str>),
}

impl PartialEq for MapError {
    /// Compares kinds and messages; [`TaskError::Failed`] errors compare by identity.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (MapError::Task(a), MapError::Task(b)) => task_error_eq(a, b),
            (MapError::Timeout, MapError::Timeout) => true,
            (MapError::Refused(a), MapError::Refused(b)) => a == b,
            _ => false,
        }
    }
}

impl PartialEq for TaskError {
    /// Compares kinds and messages; [`TaskError::Failed`] errors compare by identity.
    fn eq(&self, other: &Self) -> bool {
        task_error_eq(self, other)
    }
}

fn task_error_eq(a: &TaskError, b: &TaskError) -> bool {
    match (a, b) {
        (TaskError::Cancelled, TaskError::Cancelled)
        | (TaskError::Abandoned, TaskError::Abandoned)
        | (TaskError::Taken, TaskError::Taken) => true,
        (TaskError::Panicked(a), TaskError::Panicked(b)) => a == b,
        (TaskError::BrokenExecutor(a), TaskError::BrokenExecutor(b))
        | (TaskError::WorkerDied(a), TaskError::WorkerDied(b))
        | (TaskError::Transport(a), TaskError::Transport(b))
        | (TaskError::Unreachable(a), TaskError::Unreachable(b))
        | (TaskError::Lost(a), TaskError::Lost(b))
        | (TaskError::WorkerLost(a), TaskError::WorkerLost(b))
        | (TaskError::Rejected(a), TaskError::Rejected(b)) => a == b,
        (TaskError::TimedOut, TaskError::TimedOut) => true,
        (TaskError::Failed(a), TaskError::Failed(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind equals its clone: the comparison's catch-all arm once hid two kinds that
    /// never compared equal (`Rejected`, `WorkerLost`).
    #[test]
    fn every_task_error_equals_its_clone_and_differs_from_the_others() {
        let io = std::io::Error::other("disk");
        let all = [
            TaskError::Cancelled,
            TaskError::Panicked("p".into()),
            TaskError::Failed(Arc::new(io)),
            TaskError::BrokenExecutor("b".into()),
            TaskError::Abandoned,
            TaskError::WorkerDied("d".into()),
            TaskError::TimedOut,
            TaskError::Transport("t".into()),
            TaskError::WorkerLost("w".into()),
            TaskError::Rejected("r".into()),
            TaskError::Taken,
            TaskError::Unreachable("u".into()),
            TaskError::Lost("l".into()),
        ];
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate() {
                assert_eq!(a == b, i == j, "{a:?} against {b:?}");
            }
            assert_eq!(a, &a.clone());
        }
        assert_ne!(
            TaskError::Rejected("x".into()),
            TaskError::Rejected("y".into())
        );
    }
}
