//! What any process can do with only the URL, the namespace and the `Tasks` list: attach to
//! a task by id, read its status, and set or remove a periodic schedule.

use std::time::{Duration, Instant, UNIX_EPOCH};

use ::redis::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::RedisExecutor;
use super::reader::decode_one;
use crate::executor::PlainFn;
use crate::future::Future;
use crate::redis::host;
use crate::redis::id::TaskId;
use crate::redis::periodic::{self, PeriodicTask, Schedule};
use crate::redis::status::TaskStatus;
use crate::redis::wire::{self, FORMAT, GROUP};
use crate::redis::{LookupError, SetupError};

impl RedisExecutor {
    /// A future for the task with this id, submitted by any process (RQ's
    /// `Job.fetch(id)`, Celery's `AsyncResult(id)`): it completes when the task does,
    /// pushed like any other (no polling), and works with `as_completed`, `wait`,
    /// callbacks and `.await`. A task that already ended completes it at once from its
    /// kept record. `R` must be the type the task returns; a wrong type fails the future
    /// with [`TaskError::Transport`](crate::TaskError::Transport).
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
                    .key(&shared.keys.queue)
                    .arg(id.as_str())
                    .arg(&shared.client_id)
                    .arg(wire::millis(shared.cfg.queue_ttl))
                    .arg(GROUP)
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
                remote.hook().slot.end_send(None);
                let record = parts.get(1).map(wire::record).unwrap_or_default();
                shared.complete_from_record(seq, &record);
            }
            Some("waiting") if parts.get(1).and_then(wire::text).is_some() => {
                remote
                    .hook()
                    .slot
                    .end_send(parts.get(1).and_then(wire::text).map(str::to_owned));
                if parts.get(2).and_then(wire::int) == Some(1) {
                    remote.set_running(); // a worker holds it
                }
            }
            _ => {
                drop(shared.book.lock().remove(seq));
                shared.notify_if_drained();
                remote.hook().slot.end_send(None);
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
        crate::redis::periodic::check_name(name).map_err(|e| SetupError::Config(e.to_string()))?;
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
        let now = host::now_ms();
        let first = schedule
            .next_after(now, now)
            .ok_or_else(|| SetupError::Config("the schedule has no tick to come".into()))?;
        let spec = serde_json::to_string(&crate::redis::periodic::Spec { schedule, fields })
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

    /// The periodic tasks set in this namespace, soonest tick first, each with its name,
    /// schedule, function and next tick (Celery beat's schedule, rq-scheduler's
    /// `get_jobs(with_times=True)`). At most the first 10,000; an entry that does not
    /// read as a schedule (written by something else) is left out.
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
    /// for p in ex.schedules()? {
    ///     println!("{}\t{}\t{}\tnext {:?}", p.name, p.task, p.schedule, p.next);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schedules(&self) -> Result<Vec<PeriodicTask>, SetupError> {
        const MAX_LISTED: usize = 10_000;
        let shared = &self.shared;
        let started = Instant::now();
        let mut control = shared.control_for_command(started)?;
        let longest = periodic::MAX_SPEC.min(shared.cfg.max_payload as u64 + 64 * 1024);
        control
            .link
            .once(|con| {
                let due: Value = ::redis::cmd("ZRANGE")
                    .arg(&shared.keys.periodic_due)
                    .arg(0)
                    .arg(MAX_LISTED - 1)
                    .arg("WITHSCORES")
                    .query(con)?;
                let due = ticks(&due);
                // The size of each spec first: one written by anyone with access to the
                // namespace is read only when it is small enough to be one of ours.
                let mut sizes = ::redis::pipe();
                for (name, _) in &due {
                    sizes.cmd("HSTRLEN").arg(&shared.keys.periodic).arg(name);
                }
                let sizes: Vec<u64> = if due.is_empty() {
                    Vec::new()
                } else {
                    sizes.query(con)?
                };
                let wanted: Vec<&(String, u64)> = due
                    .iter()
                    .zip(sizes)
                    .filter(|(_, n)| (1..=longest).contains(n))
                    .map(|(d, _)| d)
                    .collect();
                let mut specs = ::redis::pipe();
                for (name, _) in &wanted {
                    specs.cmd("HGET").arg(&shared.keys.periodic).arg(name);
                }
                let specs: Vec<Value> = if wanted.is_empty() {
                    Vec::new()
                } else {
                    specs.query(con)?
                };
                Ok(wanted
                    .into_iter()
                    .zip(specs)
                    .filter_map(|((name, next), spec)| {
                        let spec = periodic::Spec::read(wire::bytes(&spec)?)?;
                        Some(PeriodicTask {
                            name: name.clone(),
                            task: spec.task()?.to_owned(),
                            schedule: spec.schedule,
                            next: UNIX_EPOCH + Duration::from_millis(*next),
                        })
                    })
                    .collect())
            })
            .map_err(SetupError::connect(&shared.address, started))
    }
}

/// The names and next ticks (ms) of a `ZRANGE ... WITHSCORES` reply, RESP2 (flat) or RESP3
/// (pairs) shaped; a name that is not a valid schedule name, or a tick that is not a time,
/// is left out.
fn ticks(v: &Value) -> Vec<(String, u64)> {
    let items = wire::array(v).unwrap_or_default();
    let pairs: Vec<(&Value, &Value)> = if items.first().is_some_and(|i| wire::array(i).is_some()) {
        items
            .iter()
            .filter_map(|p| match wire::array(p)? {
                [name, score] => Some((name, score)),
                _ => None,
            })
            .collect()
    } else {
        items.chunks_exact(2).map(|p| (&p[0], &p[1])).collect()
    };
    pairs
        .into_iter()
        .filter_map(|(name, score)| {
            let name = wire::text(name)?;
            periodic::check_name(name).ok()?;
            let ms = match score {
                Value::Double(d) => *d,
                other => wire::text(other)?.parse::<f64>().ok()?,
            };
            (0.0..1e15)
                .contains(&ms)
                .then(|| (name.to_owned(), ms as u64))
        })
        .collect()
}
