//! The reader: takes new entries (`XREADGROUP ... BLOCK`), as many as there are free slots,
//! starts them, and tells Redis which ones run (the `START` script, for `status` and for
//! `running()` of the clients' futures).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ::redis::Value;

use super::{ANSWERED, BLOCK, DEAD_PREVIEW, Exec, Final, Msg, Running, START_NOTICE, Worker};
use crate::error::TaskError;
use crate::redis::conn::Link;
use crate::redis::host;
use crate::redis::id::TaskId;
use crate::redis::tasks::Done;
use crate::redis::wire::{self, GROUP, RawEntry, TaskEntry};

impl Worker {
    /// Takes new entries while there are free slots, until stopped.
    pub(super) fn read_loop(self: &Arc<Self>) {
        let mut link = self.link("RedisWorker reader", BLOCK + Duration::from_secs(10));
        // Tasks whose start Redis has not been told of yet.
        let mut marks: Vec<Mark> = Vec::new();
        while !self.stopping() {
            let free = {
                let mut running = self.running.lock();
                while self.full(&running) && !self.stopping() {
                    let wait = Self::next_mark(&marks).map_or(Duration::from_millis(500), |at| {
                        at.saturating_duration_since(Instant::now())
                    });
                    if wait.is_zero() {
                        // A full worker reads only once a slot is free: the marks due go
                        // now, in a round trip of their own.
                        drop(running);
                        let due = self.due_marks(&mut marks);
                        self.send_marks(&mut link, &due);
                        running = self.running.lock();
                        continue;
                    }
                    self.freed
                        .wait_for(&mut running, wait.min(Duration::from_millis(500)));
                }
                self.cfg.concurrency.saturating_sub(running.len())
            };
            if self.stopping() {
                break;
            }
            let due = self.due_marks(&mut marks);
            // Blocks no longer than until the next mark is due, so that it goes in time.
            let block = Self::next_mark(&marks).map_or(BLOCK, |at| {
                at.saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(1), BLOCK)
            });
            let stopping = || self.stopping();
            let reply = link.retry(&self.scripts, &stopping, |con| {
                let mut pipe = ::redis::pipe();
                pipe.ignore_errors();
                // The marks due, in the round trip of the next read: they run before the
                // read blocks.
                let marked = self.start_marks(&due).is_some_and(|cmd| {
                    pipe.add_command(cmd);
                    true
                });
                pipe.cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(&self.name)
                    .arg("COUNT")
                    .arg(free)
                    .arg("BLOCK")
                    .arg(wire::millis(block))
                    .arg("STREAMS")
                    .arg(&self.keys.queue)
                    .arg(">");
                let mut replies = pipe.query::<Vec<Value>>(con)?;
                let read = replies.pop().unwrap_or(Value::Nil);
                if marked && replies.first().is_some_and(wire::is_no_script) {
                    // Redis lost its scripts (a restart): the marks go again, loading them.
                    let _ = self.mark(con, &due);
                }
                match read {
                    // The queue expired or was deleted: recreate it and read again.
                    Value::ServerError(e) if e.code() == "NOGROUP" => {
                        crate::redis::ensure_group(con, &self.keys)?;
                        Ok(Value::Nil)
                    }
                    Value::ServerError(e) => Err(e.into()),
                    other => Ok(other),
                }
            });
            let Some(reply) = reply else { break };
            let entries = wire::read_reply(&reply);
            for raw in &entries {
                self.take(raw, 1);
            }
            marks.extend(entries.iter().filter_map(Mark::of));
        }
        let running = self.running.lock().len();
        log::info!(target: "concurrent_futures::redis", "worker {} stopping: it takes no new tasks, and answers the {running} it runs", self.name);
        self.freed.notify_all();
        let _ = self.tx.send(Msg::Final(Final::wake()));
    }

    /// When the first of `marks` is due.
    pub(super) fn next_mark(marks: &[Mark]) -> Option<Instant> {
        marks.iter().map(|m| m.at + START_NOTICE).min()
    }

    /// Takes out of `marks` the ones due, and drops those of tasks that ended: a task
    /// shorter than `START_NOTICE` is never marked (a no-op task's round trip is then not
    /// slowed by a notice that its clients would read just before its answer).
    pub(super) fn due_marks(&self, marks: &mut Vec<Mark>) -> Vec<Mark> {
        if marks.is_empty() {
            return Vec::new();
        }
        let now = Instant::now();
        let running = self.running.lock();
        let mut due = Vec::new();
        marks.retain_mut(|m| {
            if running.get(&m.entry).is_none_or(|r| r.run == ANSWERED) {
                false
            } else if m.at + START_NOTICE <= now {
                due.push(Mark {
                    entry: std::mem::take(&mut m.entry),
                    task: std::mem::take(&mut m.task),
                    client: std::mem::take(&mut m.client),
                    at: m.at,
                    at_ms: m.at_ms,
                });
                false
            } else {
                true
            }
        });
        due
    }

    /// Tells Redis that the tasks `marks` started (the `START` script): for `status`, and
    /// for `running()` of every future that follows them; `None` for no marks.
    pub(super) fn start_marks(&self, marks: &[Mark]) -> Option<::redis::Cmd> {
        if marks.is_empty() {
            return None;
        }
        // The hash's TTL, with every batch: emptied by the answers, the key goes, and the
        // next `HSET` makes it again without one. A dead worker's hash expires.
        let mut cmd = wire::evalsha(&self.scripts.start, &[&self.running_key()]);
        cmd.arg(self.running_ttl()).arg(self.keys.reply(""));
        for m in marks {
            cmd.arg(&m.task)
                .arg(&m.client)
                .arg(self.keys.watch(&m.task))
                .arg(m.at_ms);
        }
        Some(cmd)
    }

    /// Sends `start_marks` on `con` in a round trip of their own, loading the scripts if
    /// Redis lost them.
    pub(super) fn mark(
        &self,
        con: &mut ::redis::Connection,
        marks: &[Mark],
    ) -> ::redis::RedisResult<()> {
        let Some(cmd) = self.start_marks(marks) else {
            return Ok(());
        };
        match cmd.query::<Value>(con) {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                self.scripts.load(con)?;
                cmd.query::<()>(con)
            }
            other => other.map(drop),
        }
    }

    /// Sends `start_marks` in a round trip of their own (best effort).
    pub(super) fn send_marks(&self, link: &mut Link, marks: &[Mark]) {
        if !marks.is_empty() {
            let _ = link.once(|con| self.mark(con, marks));
        }
    }

    /// Starts an entry this worker now holds at delivery `attempt`, or answers it at once
    /// if it is malformed.
    pub(super) fn take(self: &Arc<Self>, raw: &RawEntry, attempt: u64) {
        let entry = match wire::task_entry(raw, self.cfg.max_payload) {
            Ok(entry) => entry,
            Err((route, why)) => {
                log::warn!(target: "concurrent_futures::redis", "dead-lettering entry {}: {why}", raw.id);
                #[cfg(feature = "metrics")]
                super::meter::dead_lettered();
                let _ = self.tx.send(Msg::Final(Final {
                    id: raw.id.clone(),
                    attempt,
                    route,
                    dead: Some(dead_fields(
                        raw,
                        "rejected",
                        &why,
                        &self.name,
                        self.cfg.max_payload,
                    )),
                    outcome: Err(TaskError::Rejected(why.into())),
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
            log::warn!(target: "concurrent_futures::redis", "dead-lettering task {} ({}): {why}", entry.route.task, entry.name);
            #[cfg(feature = "metrics")]
            super::meter::dead_lettered();
            let _ = self.tx.send(Msg::Final(Final {
                id: raw.id.clone(),
                attempt,
                dead: Some(dead_fields(
                    raw,
                    "lost",
                    &why,
                    &self.name,
                    self.cfg.max_payload,
                )),
                route: Some(entry.route),
                outcome: Err(TaskError::WorkerLost(why.into())),
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
                    taken: Instant::now(),
                    killed: false,
                    pool_ids: Vec::new(),
                },
            );
        }
        log::debug!(target: "concurrent_futures::redis", "task {} ({}) started on {}, delivery {attempt}", entry.route.task, entry.name, self.name);
        #[cfg(feature = "metrics")]
        super::meter::started(&raw.id);
        if deadline.is_some() {
            // The finisher may be asleep until a later timer: it must see this one.
            let _ = self.tx.send(Msg::Final(Final::wake()));
        }
        // Feature `tracing`: the delivery's span, parent of the pool's `task` span that runs
        // it, so a task id leads to its run.
        #[cfg(feature = "tracing")]
        let delivery = tracing::info_span!(
            target: "concurrent_futures::redis",
            "redis_task",
            task = %entry.route.task,
            function = %entry.name,
            delivery = attempt,
            worker = %self.name,
        );
        // The submitter's trace goes on here: as the parent on the first delivery, a link
        // on a later one (a takeover after a worker died, or a reclaim).
        #[cfg(feature = "tracing")]
        if let Some(context) = &entry.trace {
            let relation = if attempt > 1 {
                crate::propagate::Relation::FollowsFrom
            } else {
                crate::propagate::Relation::Parent
            };
            crate::propagate::extract(&delivery, context, relation);
        }
        #[cfg(feature = "tracing")]
        let _delivery = delivery.entered();
        self.dispatch(&raw.id, run, &entry);
    }

    pub(super) fn thread_deadline(&self, entry: &TaskEntry) -> Option<Instant> {
        match self.exec {
            Exec::Threads(_) => entry.limit.and_then(|l| Instant::now().checked_add(l)),
            #[cfg(all(unix, feature = "process"))]
            Exec::Processes(_) => None, // the process pool enforces it, killing the process
        }
    }

    /// Runs one try of a task; its outcome comes back to the finisher as `Msg::Done`.
    pub(super) fn dispatch(self: &Arc<Self>, id: &str, run: u64, entry: &TaskEntry) {
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
            return done(Err(TaskError::Rejected(
                format!(
                    "no task named {:?} is registered on worker {}",
                    entry.name, self.name
                )
                .into(),
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
            Exec::Processes(pool) => {
                let ids = f.submit(pool, &entry.args, entry.chunk, entry.limit, done);
                let mut running = self.running.lock();
                if let Some(r) = running.get_mut(id).filter(|r| r.run == run) {
                    if r.killed {
                        drop(running);
                        for id in ids {
                            pool.kill_task_id(id); // asked to die before it started
                        }
                    } else {
                        r.pool_ids = ids;
                    }
                }
            }
        }
    }
}

/// A task this worker started, to tell Redis about (see `start_marks`).
pub(super) struct Mark {
    pub(super) entry: String,
    pub(super) task: String,
    pub(super) client: String,
    /// When it started.
    pub(super) at: Instant,
    pub(super) at_ms: u64,
}

impl Mark {
    /// The mark of a queue entry with a valid task id and client; `None` for others
    /// (they are answered at once, as malformed).
    pub(super) fn of(raw: &RawEntry) -> Option<Mark> {
        let task = raw.text("id").filter(|id| TaskId::checked(id).is_some())?;
        let client = raw.text("c").filter(|c| wire::valid_id(c))?;
        Some(Mark {
            entry: raw.id.clone(),
            task: task.to_owned(),
            client: client.to_owned(),
            at: Instant::now(),
            at_ms: host::now_ms(),
        })
    }
}

/// A dead letter: where the entry came from, why it died, and its fields, so that
/// `redis-cli XRANGE {ns}:dead - +` shows what happened and
/// [`retry_dead`](crate::redis::RedisExecutor::retry_dead) can queue it again. The argument
/// is kept whole up to `max_payload`, the other fields up to 4 KiB; a longer value is cut to
/// 4 KiB and the field `cut` names it (such a letter is shown, never retried).
pub(super) fn dead_fields(
    raw: &RawEntry,
    why: &str,
    msg: &str,
    worker: &str,
    max_payload: usize,
) -> Vec<(String, String)> {
    let mut out = vec![
        ("entry".to_owned(), raw.id.clone()),
        ("why".to_owned(), why.to_owned()),
        ("msg".to_owned(), msg.chars().take(DEAD_PREVIEW).collect()),
        ("w".to_owned(), worker.to_owned()),
        ("at".to_owned(), host::now_ms().to_string()),
    ];
    let mut cut = Vec::new();
    for (k, v) in raw.fields.iter().flatten().take(16) {
        if k.len() <= 16 && !out.iter().any(|(o, _)| o == k) && k != "cut" {
            let limit = if k == "a" { max_payload } else { DEAD_PREVIEW };
            let v = if v.len() > limit {
                cut.push(k.as_str());
                &v[..DEAD_PREVIEW.min(v.len())]
            } else {
                &v[..]
            };
            out.push((k.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    if !cut.is_empty() {
        out.push(("cut".to_owned(), cut.join(",")));
    }
    out
}
