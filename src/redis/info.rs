//! [`QueueInfo`]: what a queue holds now, read in one pipeline (Python's `rq info`).

use std::time::Duration;

use ::redis::{Connection, RedisResult, Value};

use super::host;
use super::wire::{self, GROUP, Keys};

/// The most running tasks and dead letters listed.
const LIST: usize = 100;

/// A snapshot of a queue: from [`RedisExecutor::info`](super::RedisExecutor::info) or
/// [`inspect`](super::inspect).
///
/// # Examples
///
/// ```no_run
/// let info = concurrent_futures::redis::inspect("redis://127.0.0.1/", "cf")?;
/// println!("{info}");
/// for w in &info.workers {
///     println!("{} last seen {:?} ago", w.name, w.last_seen);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct QueueInfo {
    /// Tasks waiting for a worker.
    pub queued: u64,
    /// Tasks a worker holds (at most 100 listed; [`running_total`](Self::running_total)
    /// counts them all).
    pub running: Vec<RunningTask>,
    /// How many tasks workers hold.
    pub running_total: u64,
    /// Workers that sent a heartbeat recently.
    pub workers: Vec<WorkerInfo>,
    /// How many dead letters are kept.
    pub dead_total: u64,
    /// The newest dead letters, newest first (at most 100).
    pub dead: Vec<DeadLetter>,
    /// The newest tasks that ran and failed (panicked, timed out, their process died),
    /// newest first (at most 100 listed; Redis keeps about 1,000).
    pub failed: Vec<FailedTask>,
}

/// A task that ran and failed, as the failures list keeps it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FailedTask {
    /// Its task id.
    pub id: String,
    /// The error, as the task's future has it.
    pub error: crate::error::TaskError,
    /// The worker that ran it.
    pub worker: String,
    /// When it was answered.
    pub at: std::time::SystemTime,
}

/// A task a worker holds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunningTask {
    /// Its queue entry id.
    pub entry: String,
    /// Its task name (empty if the entry is gone).
    pub task: String,
    /// Its task id (empty if the entry is gone): what
    /// [`kill`](super::RedisExecutor::kill) and [`status`](super::RedisExecutor::status) take.
    pub id: String,
    /// The worker (consumer) holding it.
    pub worker: String,
    /// Time since its lease was last renewed: a live worker keeps this under a third of a
    /// lease.
    pub since_renewal: Duration,
    /// How many times it was delivered.
    pub deliveries: u64,
}

/// A live worker.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Its consumer name, `<host>-<pid>-<random>`.
    pub name: String,
    /// Time since its last heartbeat.
    pub last_seen: Duration,
    /// What it last reported: `host`, `pid`, `concurrency`, `running`, `completed`,
    /// `lease_ms`, `mode`.
    pub details: Vec<(String, String)>,
}

impl WorkerInfo {
    /// False once the worker has been silent for longer than its lease: it is dead, frozen
    /// or cut off, and its tasks are being taken over by the others.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let info = concurrent_futures::redis::inspect("redis://127.0.0.1/", "cf")?;
    /// let alive = info.workers.iter().filter(|w| w.alive()).count();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn alive(&self) -> bool {
        let lease = self
            .details
            .iter()
            .find(|(k, _)| k == "lease_ms")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(30_000);
        self.last_seen <= Duration::from_millis(lease)
    }
}

/// An entry that was answered without running: refused or lost.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its id in the dead-letter stream.
    pub id: String,
    /// `rejected` or `lost`.
    pub why: String,
    /// The explanation.
    pub message: String,
    /// All its fields, as stored: the original entry's fields (`id` the task id, `fn` its
    /// name, `a` its argument, kept whole up to the worker's `max_payload_bytes`; a field
    /// `cut` names the values that were longer and were cut to 4 KiB).
    pub fields: Vec<(String, String)>,
}

/// One sample of a queue's history: what it held at a moment, and how many tasks had been
/// answered by then. Workers take one every 10 s while any runs; Redis keeps six hours of
/// them, so the history outlives every process (and a restart of the dashboard that shows
/// it). From [`RedisExecutor::history`](super::RedisExecutor::history).
///
/// # Examples
///
/// ```no_run
/// # use concurrent_futures::redis::{RedisExecutor, Tasks};
/// let ex = RedisExecutor::builder("redis://127.0.0.1/", Tasks::new()).build()?;
/// let history = ex.history()?;
/// for pair in history.windows(2) {
///     let secs = pair[1].at.duration_since(pair[0].at).unwrap_or_default().as_secs_f64();
///     let per_second = (pair[1].completed - pair[0].completed) as f64 / secs.max(0.001);
///     println!("{} queued, {per_second:.1} tasks/s", pair[1].queued);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueSample {
    /// When it was taken (Redis's clock).
    pub at: std::time::SystemTime,
    /// Tasks waiting for a worker.
    pub queued: u64,
    /// Tasks workers held.
    pub running: u64,
    /// How long the oldest waiting task had waited (zero if none waited).
    pub oldest_age: Duration,
    /// Tasks answered with a result since the namespace began.
    pub completed: u64,
    /// Tasks answered with an error since the namespace began.
    pub failed: u64,
}

/// Reads the history, oldest first: at most `MAX_SAMPLES`, each field checked (a sample
/// that does not parse is left out).
pub(super) fn history(con: &mut Connection, keys: &Keys) -> RedisResult<Vec<QueueSample>> {
    let v: Value = ::redis::cmd("XREVRANGE")
        .arg(&keys.stats)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(wire::MAX_SAMPLES)
        .query(con)?;
    let mut samples: Vec<QueueSample> = wire::entries(&v)
        .iter()
        .filter_map(|e| {
            let ms: u64 = e.id.split('-').next()?.parse().ok()?;
            let n = |k: &str| -> Option<u64> { e.text(k)?.parse().ok() };
            Some(QueueSample {
                at: std::time::UNIX_EPOCH + Duration::from_millis(ms),
                queued: n("q")?,
                running: n("r")?,
                oldest_age: Duration::from_millis(n("o")?),
                completed: n("ok")?,
                failed: n("f")?,
            })
        })
        .collect();
    samples.reverse();
    Ok(samples)
}

impl std::fmt::Display for QueueInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "queued: {}  running: {}  workers: {}  dead letters: {}",
            self.queued,
            self.running_total,
            self.workers.len(),
            self.dead_total
        )?;
        for w in &self.workers {
            let d: Vec<String> = w.details.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let state = if w.alive() { "" } else { " SILENT" };
            writeln!(
                f,
                "  worker {}{state} (seen {:.1?} ago) {}",
                w.name,
                w.last_seen,
                d.join(" ")
            )?;
        }
        for r in &self.running {
            writeln!(
                f,
                "  running {} {} on {} (delivery {}, renewed {:.1?} ago)",
                r.entry, r.task, r.worker, r.deliveries, r.since_renewal
            )?;
        }
        for d in &self.dead {
            writeln!(f, "  dead {} {}: {}", d.id, d.why, d.message)?;
        }
        for t in self.failed.iter().take(10) {
            writeln!(f, "  failed {} on {}: {}", t.id, t.worker, t.error)?;
        }
        Ok(())
    }
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| Some((wire::text(k)?.to_owned(), wire::text(v)?.to_owned())))
            .collect(),
        other => wire::array(other)
            .unwrap_or_default()
            .chunks(2)
            .filter_map(|p| {
                Some((
                    wire::text(p.first()?)?.to_owned(),
                    wire::text(p.get(1)?)?.to_owned(),
                ))
            })
            .collect(),
    }
}

/// Reads the snapshot.
pub(super) fn read(con: &mut Connection, keys: &Keys) -> RedisResult<QueueInfo> {
    let mut pipe = ::redis::pipe();
    pipe.ignore_errors()
        .cmd("XLEN")
        .arg(&keys.queue)
        .cmd("XPENDING")
        .arg(&keys.queue)
        .arg(GROUP)
        .cmd("XPENDING")
        .arg(&keys.queue)
        .arg(GROUP)
        .arg("-")
        .arg("+")
        .arg(LIST)
        .cmd("ZRANGE")
        .arg(&keys.workers)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .cmd("XLEN")
        .arg(&keys.dead)
        .cmd("XREVRANGE")
        .arg(&keys.dead)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(LIST)
        .cmd("XREVRANGE")
        .arg(&keys.failures)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(LIST);
    let r: Vec<Value> = pipe.query(con)?;
    let get = |i: usize| r.get(i).cloned().unwrap_or(Value::Nil);
    let len = wire::int(&get(0)).unwrap_or(0).max(0) as u64;
    let running_total = wire::array(&get(1))
        .and_then(|s| s.first())
        .and_then(wire::int)
        .unwrap_or(0)
        .max(0) as u64;
    let mut running: Vec<RunningTask> = wire::array(&get(2))
        .unwrap_or_default()
        .iter()
        .filter_map(|row| {
            let row = wire::array(row)?;
            Some(RunningTask {
                entry: wire::text(row.first()?)?.to_owned(),
                task: String::new(),
                id: String::new(),
                worker: wire::text(row.get(1)?)?.to_owned(),
                since_renewal: Duration::from_millis(wire::int(row.get(2)?)?.max(0) as u64),
                deliveries: wire::int(row.get(3)?)?.max(0) as u64,
            })
        })
        .collect();
    let now = host::now_ms();
    let heartbeats: Vec<(String, String)> = pairs(&get(3));
    let dead_total = wire::int(&get(4)).unwrap_or(0).max(0) as u64;
    let dead = wire::entries(&get(5))
        .into_iter()
        .map(|e| {
            let fields: Vec<(String, String)> = e
                .fields
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect();
            let field = |n: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            DeadLetter {
                id: e.id.clone(),
                why: field("why"),
                message: field("msg"),
                fields,
            }
        })
        .collect();
    // Second round: the names of the running tasks and the workers' details.
    let mut pipe = ::redis::pipe();
    pipe.ignore_errors();
    for t in &running {
        pipe.cmd("XRANGE")
            .arg(&keys.queue)
            .arg(&t.entry)
            .arg(&t.entry);
    }
    for (name, _) in &heartbeats {
        pipe.cmd("HGETALL")
            .arg(format!("{{{}}}:worker:{name}", keys.ns));
    }
    let more: Vec<Value> = if running.is_empty() && heartbeats.is_empty() {
        Vec::new()
    } else {
        pipe.query(con)?
    };
    for (t, v) in running.iter_mut().zip(&more) {
        if let Some(e) = wire::entries(v).first() {
            t.task = e.text("fn").unwrap_or("").to_owned();
            t.id = e.text("id").unwrap_or("").to_owned();
        }
    }
    let workers = heartbeats
        .into_iter()
        .zip(
            more.iter()
                .skip(running.len())
                .chain(std::iter::repeat(&Value::Nil)),
        )
        .map(|((name, score), details)| WorkerInfo {
            last_seen: Duration::from_millis(
                now.saturating_sub(score.parse::<f64>().unwrap_or(0.0) as u64),
            ),
            name,
            details: pairs(details),
        })
        .collect();
    let failed = wire::entries(&get(6))
        .iter()
        .filter_map(|e| {
            let ms: u64 = e.id.split('-').next()?.parse().ok()?;
            // Whoever can write to Redis can make it long: 4 KiB is what a worker keeps.
            let message: String = e.text("r").unwrap_or("").chars().take(4096).collect();
            let error = super::tasks::error(e.text("s")?, &message)?;
            Some(FailedTask {
                id: e.text("id")?.to_owned(),
                error,
                worker: e.text("w").unwrap_or("").to_owned(),
                at: std::time::UNIX_EPOCH + Duration::from_millis(ms),
            })
        })
        .collect();
    Ok(QueueInfo {
        queued: len.saturating_sub(running_total),
        running,
        running_total,
        workers,
        dead_total,
        dead,
        failed,
    })
}
