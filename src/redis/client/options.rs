//! The queue's settings of [`TaskOptions`] (retries, a chosen id, a delay), which only the
//! Redis executor honours; the type itself, with the time limit every executor shares, is in
//! the crate root's `options.rs`. The writer reads them when it builds a queue entry, and
//! the builder keeps the executor's defaults in one.

use std::time::{Duration, SystemTime};

use crate::options::TaskOptions;
use crate::redis::id::TaskId;

/// Settings only a queue can honour: a local pool's `submit_with` refuses a task carrying one
/// ([`SubmitError::Unsupported`](crate::SubmitError::Unsupported)).
impl TaskOptions {
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
        self.id = Some(id.shared());
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

/// The chosen id, as a [`TaskId`] again.
pub(super) fn chosen_id(opts: &TaskOptions) -> Option<TaskId> {
    opts.id.clone().map(TaskId::from_shared)
}
