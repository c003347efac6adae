//! [`TaskStatus`]: where a Redis task stands, read by id from any process.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::Value;

use super::tasks;
use super::wire;
use crate::error::TaskError;

/// Where a Redis task stands, read by id from any process with
/// [`RedisExecutor::status`](super::RedisExecutor::status) (RQ's `job.get_status()`,
/// Celery's `AsyncResult.state`).
///
/// A task's record is kept for `result_ttl` after it ended (one day by default); after
/// that, and for an id that never existed, the status is `Unknown`.
///
/// # Examples
///
/// ```no_run
/// use concurrent_futures::redis::{RedisExecutor, TaskStatus, Tasks};
///
/// fn double(x: u32) -> u32 { x * 2 }
/// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new().add("double", double)).build()?;
/// let id = ex.submit(double, 21)?.task_id().unwrap();
/// ex.flush()?;
/// match ex.status(&id)? {
///     TaskStatus::Queued => println!("waiting for a worker"),
///     TaskStatus::Running { worker, deliveries, .. } => println!("on {worker}, delivery {deliveries}"),
///     TaskStatus::Done { .. } => println!("done: attach to read the result"),
///     other => println!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TaskStatus {
    /// In the queue, not taken by a worker yet.
    Queued,
    /// Waiting in Redis to run later ([`TaskOptions::delay`](super::TaskOptions::delay)):
    /// it moves to the queue when due.
    #[non_exhaustive]
    Scheduled {
        /// When it is due.
        at: SystemTime,
    },
    /// A worker holds it.
    #[non_exhaustive]
    Running {
        /// The worker's consumer name, `<host>-<pid>-<random>`.
        worker: String,
        /// When this delivery started, if the worker recorded it.
        started: Option<SystemTime>,
        /// Which delivery this is: 1, or more after a worker died holding it.
        deliveries: u64,
        /// Time since the worker last renewed its lease (a live worker keeps this under a
        /// third of a lease).
        since_renewal: Duration,
    },
    /// It returned a value ([`attach`](super::RedisExecutor::attach) to read it).
    #[non_exhaustive]
    Done {
        /// The worker that ran it.
        worker: String,
        /// When it ended.
        finished: Option<SystemTime>,
    },
    /// It failed: panicked, timed out, or its worker process died.
    #[non_exhaustive]
    Failed {
        /// The error its future has.
        error: TaskError,
        /// The worker that ran it.
        worker: String,
        /// When it ended.
        finished: Option<SystemTime>,
    },
    /// It never ran to an end and went to the dead letters: malformed or unknown to the
    /// workers ([`TaskError::Rejected`]), or delivered `max_deliveries` times without an
    /// answer ([`TaskError::WorkerLost`]).
    #[non_exhaustive]
    DeadLettered {
        /// The error its future has.
        error: TaskError,
        /// When it was dead-lettered.
        finished: Option<SystemTime>,
    },
    /// It was cancelled before a worker took it.
    Cancelled,
    /// No such task: it never existed, its record expired (`result_ttl`), or Redis lost it.
    Unknown,
}

impl TaskStatus {
    /// Whether the task ended (done, failed, dead-lettered or cancelled).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::redis::TaskStatus;
    /// assert!(TaskStatus::Cancelled.is_finished());
    /// assert!(!TaskStatus::Queued.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            TaskStatus::Done { .. }
                | TaskStatus::Failed { .. }
                | TaskStatus::DeadLettered { .. }
                | TaskStatus::Cancelled
        )
    }

    /// Reads the `STATUS` script's reply (untrusted: anything odd is `Unknown`).
    pub(super) fn parse(v: &Value) -> TaskStatus {
        let Some(parts) = wire::array(v) else {
            return TaskStatus::Unknown;
        };
        let text = |i: usize| parts.get(i).and_then(wire::text).unwrap_or("");
        let int = |i: usize| parts.get(i).and_then(wire::int).unwrap_or(0).max(0) as u64;
        match text(0) {
            "queued" => TaskStatus::Queued,
            "scheduled" => match text(1).parse::<u64>() {
                Ok(ms) => TaskStatus::Scheduled { at: at(ms) },
                Err(_) => TaskStatus::Unknown,
            },
            "running" => TaskStatus::Running {
                worker: clean(text(2)),
                since_renewal: Duration::from_millis(int(3)),
                deliveries: int(4),
                started: parts
                    .get(5)
                    .and_then(wire::int)
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map(at),
            },
            "done" => {
                let record = parts.get(1).map(wire::record).unwrap_or_default();
                TaskStatus::from_record(&record)
            }
            _ => TaskStatus::Unknown,
        }
    }

    /// A task's kept record: fields `s` status, `r` result or message, `w` worker, `at`
    /// end time in ms.
    pub(super) fn from_record(record: &[(String, Vec<u8>)]) -> TaskStatus {
        let get = |k: &str| {
            record
                .iter()
                .find(|(f, _)| f == k)
                .map_or("", |(_, v)| std::str::from_utf8(v).unwrap_or(""))
        };
        let finished = get("at").parse::<u64>().ok().map(at);
        let worker = clean(get("w"));
        let body = get("r");
        let message: String = body.chars().take(64 * 1024).collect();
        match get("s") {
            "ok" => TaskStatus::Done { worker, finished },
            "cancelled" => TaskStatus::Cancelled,
            status => match tasks::error(status, &message) {
                Some(error @ (TaskError::Rejected(_) | TaskError::WorkerLost(_))) => {
                    TaskStatus::DeadLettered { error, finished }
                }
                Some(error) => TaskStatus::Failed {
                    error,
                    worker,
                    finished,
                },
                None => TaskStatus::Unknown,
            },
        }
    }
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A worker name read from Redis, cut to what a name may hold.
fn clean(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
        .take(wire::MAX_ID)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn replies_parse_and_garbage_is_unknown() {
        assert_eq!(
            TaskStatus::parse(&Value::Array(vec![bulk("queued"), bulk("1-0")])),
            TaskStatus::Queued
        );
        let running = TaskStatus::parse(&Value::Array(vec![
            bulk("running"),
            bulk("1-0"),
            bulk("host-1-ab"),
            Value::Int(1500),
            Value::Int(2),
            bulk("1700000000000"),
        ]));
        assert_eq!(
            running,
            TaskStatus::Running {
                worker: "host-1-ab".into(),
                started: Some(at(1_700_000_000_000)),
                deliveries: 2,
                since_renewal: Duration::from_millis(1500),
            }
        );
        let failed = TaskStatus::parse(&Value::Array(vec![
            bulk("done"),
            bulk("panic\nhost-1-ab\n1700000000000\nboom\nwith a newline"),
        ]));
        assert!(matches!(
            failed,
            TaskStatus::Failed {
                error: TaskError::Panicked(_),
                ..
            }
        ));
        for junk in [Value::Nil, Value::Int(3), Value::Array(vec![bulk("what")])] {
            assert_eq!(TaskStatus::parse(&junk), TaskStatus::Unknown);
        }
    }
}
