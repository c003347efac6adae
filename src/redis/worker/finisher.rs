//! The finisher: collects outcomes, enforces time limits and retries, and answers in
//! pipelined batches through the `FINISH` script, which applies an answer only if this
//! worker still holds the entry on the same delivery (the fence).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ::redis::Value;
use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{ANSWERED, DEAD_MAX, Final, Msg, Worker};
use crate::error::TaskError;
use crate::redis::conn::{self, Link, Patience};
use crate::redis::host;
use crate::redis::tasks::{self, Outcome};
use crate::redis::wire::{self, GROUP};

impl Worker {
    /// Collects outcomes, applies time limits and retries, and answers, until stopped and
    /// empty.
    pub(super) fn finish_loop(self: &Arc<Self>, rx: &Receiver<Msg>) {
        loop {
            let next = self.next_timer();
            let first = match next {
                Some(at) => rx.recv_deadline(at.min(Instant::now() + Duration::from_secs(1))),
                None => rx.recv_timeout(Duration::from_secs(1)),
            };
            let mut msgs = Vec::new();
            match first {
                Ok(m) => msgs.push(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            msgs.extend(rx.try_iter().take(1024));
            let mut finals = Vec::new();
            for msg in msgs {
                match msg {
                    Msg::Final(f) if f.id.is_empty() => {} // a wake-up
                    Msg::Final(f) => finals.push(f),
                    Msg::Done { id, run, outcome } => {
                        if let Some(f) = self.outcome(&id, run, outcome) {
                            finals.push(f);
                        }
                    }
                }
            }
            finals.extend(self.timers());
            if !finals.is_empty() {
                self.answer(&mut self.answers.lock(), &finals);
            }
            if self.stopping() && self.running.lock().is_empty() && rx.is_empty() {
                break;
            }
        }
        log::info!(target: "concurrent_futures::redis", "worker {} stopped: every task it held is answered", self.name);
        self.drained.store(true, Ordering::SeqCst);
    }

    /// The next time limit or retry time among the running tasks.
    pub(super) fn next_timer(&self) -> Option<Instant> {
        self.running
            .lock()
            .values()
            .filter_map(|r| match (r.run, r.deadline, r.retry_at) {
                (ANSWERED, _, _) => None,
                (0, _, at) => at,
                (_, at, _) => at,
            })
            .min()
    }

    /// Time limits that passed (thread mode) and retries that are due.
    pub(super) fn timers(self: &Arc<Self>) -> Vec<Final> {
        let now = Instant::now();
        let mut out = Vec::new();
        let (expired, due): (Vec<_>, Vec<_>) = {
            let running = self.running.lock();
            let expired = running
                .iter()
                .filter(|(_, r)| {
                    r.run != ANSWERED
                        && (r.killed || r.run != 0 && r.deadline.is_some_and(|d| d <= now))
                })
                .map(|(id, r)| (id.clone(), r.run, r.killed))
                .collect();
            let due = running
                .iter()
                .filter(|(_, r)| r.run == 0 && r.retry_at.is_some_and(|d| d <= now))
                .map(|(id, _)| id.clone())
                .collect();
            (expired, due)
        };
        for (id, run, killed) in expired {
            let outcome = if killed {
                TaskError::Cancelled
            } else {
                TaskError::TimedOut
            };
            out.extend(self.outcome(&id, run, Err(outcome)));
        }
        for id in due {
            let run = self.runs.fetch_add(1, Ordering::Relaxed);
            let entry = {
                let mut running = self.running.lock();
                let Some(r) = running.get_mut(&id) else {
                    continue;
                };
                r.run = run;
                r.retry_at = None;
                r.deadline = self.thread_deadline(&r.entry);
                r.entry.clone()
            };
            self.dispatch(&id, run, &entry);
        }
        out
    }

    /// What to do with a run's outcome: nothing (a stale run), schedule a retry, or answer.
    pub(super) fn outcome(&self, id: &str, run: u64, outcome: Outcome) -> Option<Final> {
        let mut running = self.running.lock();
        let r = running.get_mut(id)?;
        if r.run != run {
            return None; // a run that timed out already, or one replaced by a retry
        }
        if tasks::retryable(&outcome) && r.retries_done < r.entry.retries {
            let pause = r.entry.backoff.saturating_mul(1 << r.retries_done.min(16));
            r.retries_done += 1;
            r.run = 0;
            r.deadline = None;
            r.retry_at = Some(Instant::now() + pause.min(Duration::from_secs(3600)));
            log::info!(target: "concurrent_futures::redis", "task {id} failed ({}); try {} in {pause:?}", tasks::status(&outcome), r.retries_done + 1);
            #[cfg(feature = "metrics")]
            super::meter::retried();
            return None;
        }
        r.run = ANSWERED; // later outcomes of this entry are stale
        let took = r.taken.elapsed();
        #[cfg(feature = "metrics")]
        super::meter::completed(tasks::status(&outcome), took);
        let (task, name) = (&r.entry.route.task, &r.entry.name);
        match &outcome {
            Ok(_) => {
                log::debug!(target: "concurrent_futures::redis", "task {task} ({name}) done in {took:.1?}");
            }
            failed => {
                let why: String = tasks::body(failed).chars().take(300).collect();
                log::warn!(target: "concurrent_futures::redis", "task {task} ({name}) failed after {took:.1?}: {} {why}", tasks::status(failed));
            }
        }
        let dead = matches!(outcome, Err(TaskError::Rejected(_))).then(|| {
            #[cfg(feature = "metrics")]
            super::meter::dead_lettered();
            // The whole entry again, so that the letter can be retried (a worker that
            // registers the name, say, is deployed later).
            let raw = wire::RawEntry {
                id: id.to_owned(),
                fields: Some(wire::entry_fields(&r.entry)),
            };
            super::reader::dead_fields(
                &raw,
                "rejected",
                &tasks::body(&outcome),
                &self.name,
                self.cfg.max_payload,
            )
        });
        Some(Final {
            id: id.to_owned(),
            attempt: r.attempt,
            route: Some(r.entry.route.clone()),
            outcome,
            ttl: r.entry.ttl,
            dead,
        })
    }

    /// Sends the answers through the `finish` script, in one pipeline, then frees their
    /// slots.
    pub(super) fn answer(&self, link: &mut Link, finals: &[Final]) {
        // Retried until Redis can be reached: a worker that stops answering would let its
        // tasks run again elsewhere, which is allowed, but never drops an answer it can give.
        // An answer Redis refuses for now (`LOADING` after a restart, a failover's
        // `READONLY`) is sent again once Redis is ready. An answer Redis refuses for good (a
        // key of the namespace of the wrong type, say) is logged and dropped, never retried:
        // one bad key must not wedge every answer behind it.
        let mut todo: Vec<&Final> = finals.iter().collect();
        let mut patience = Patience::new("RedisWorker finisher");
        while !todo.is_empty() {
            let pipe = self.finish_pipeline(&todo);
            // Given up only by a worker that is stopping, once Redis has been out of reach
            // for `outage_limit`: stopping always ends.
            let failing = std::cell::Cell::new(None::<Instant>);
            let give_up = || {
                let since = failing.get().unwrap_or_else(Instant::now);
                failing.set(Some(since));
                self.stopping() && since.elapsed() >= self.cfg.outage_limit
            };
            let applied = link.retry(&self.scripts, &give_up, |con| {
                let mut reply: Vec<Value> = pipe.query(con)?;
                if matches!(reply.first(), Some(Value::ServerError(e)) if e.code() == "NOSCRIPT") {
                    // Redis restarted and lost its scripts: load them, then send again.
                    self.scripts.load(con)?;
                    reply = pipe.query(con)?;
                }
                Ok(wire::per_item(reply.first(), todo.len()))
            });
            let Some(applied) = applied else {
                log::warn!(target: "concurrent_futures::redis", "stopping: dropping {} answers that Redis could not take for {:?}; those tasks run again on another worker after their lease", todo.len(), self.cfg.outage_limit);
                let mut running = self.running.lock();
                for f in &todo {
                    if running.get(&f.id).is_some_and(|r| r.run == ANSWERED) {
                        running.remove(&f.id);
                    }
                }
                drop(running);
                self.freed.notify_all();
                return;
            };
            let mut again = Vec::new();
            let mut code = String::new();
            let mut running = self.running.lock();
            for (i, f) in todo.into_iter().enumerate() {
                if let Some(c) = conn::refused_for_now(applied.get(i)) {
                    code = c.to_owned();
                    again.push(f);
                    continue;
                }
                match applied.get(i) {
                    Some(Value::Int(0)) => {
                        log::info!(target: "concurrent_futures::redis", "the answer to {} was dropped: another worker holds it now", f.id);
                    }
                    Some(Value::Int(2)) => {
                        self.completed.fetch_add(1, Ordering::Relaxed);
                        log::warn!(target: "concurrent_futures::redis", "answered {}, which Redis no longer had (restarted without its data, or flushed)", f.id);
                    }
                    Some(Value::ServerError(e)) => {
                        log::error!(target: "concurrent_futures::redis", "Redis refused the answer to {}: {e:?}", f.id);
                    }
                    _ => {
                        self.completed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if running.get(&f.id).is_some_and(|r| r.run == ANSWERED) {
                    running.remove(&f.id);
                }
            }
            drop(running);
            self.freed.notify_all();
            if again.is_empty() {
                patience.done();
                break;
            }
            patience.wait(link, &code, again.len());
            todo = again;
        }
    }

    /// The `finish` script for each answer, in one pipeline whose commands may fail alone.
    pub(super) fn finish_pipeline(&self, finals: &[&Final]) -> ::redis::Pipeline {
        let mut pipe = ::redis::pipe();
        pipe.ignore_errors();
        let mut inv = wire::evalsha(
            &self.scripts.finish,
            &[
                &self.keys.queue,
                &self.keys.dead,
                &self.keys.counts,
                &self.keys.failures,
            ],
        );
        inv.arg(GROUP)
            .arg(&self.name)
            .arg(wire::millis(self.cfg.dead_ttl))
            .arg(DEAD_MAX)
            .arg(self.keys.reply(""))
            .arg(host::now_ms());
        for f in finals {
            let reply_key = f
                .route
                .as_ref()
                .map_or_else(|| self.keys.reply("-"), |r| self.keys.reply(&r.client));
            let mut flags = String::new();
            if f.route.is_some() {
                flags.push('r');
            }
            if f.dead.is_some() {
                flags.push('d');
            }
            // The FINISH script reads these by position: id, status, body, worker.
            let body = tasks::body(&f.outcome);
            let reply: Vec<(&str, &str)> = match &f.route {
                Some(route) => vec![
                    ("id", &route.task),
                    ("s", tasks::status(&f.outcome)),
                    ("r", &body),
                    ("w", &self.name),
                ],
                None => Vec::new(),
            };
            let task = f.route.as_ref().map_or("-", |r| &r.task);
            inv.arg(&f.id)
                .arg(f.attempt)
                .arg(wire::millis(f.ttl))
                .arg(flags)
                .arg(reply_key)
                .arg(self.keys.ids(task))
                .arg(self.keys.result(task))
                .arg(self.keys.watch(task))
                .arg(task)
                .arg(reply.len() * 2);
            for (k, v) in &reply {
                inv.arg(*k).arg(*v);
            }
            inv.arg(f.dead.as_ref().map_or(0, |d| d.len() * 2));
            for (k, v) in f.dead.iter().flatten() {
                inv.arg(k).arg(v);
            }
        }
        pipe.add_command(inv);
        // Out of the running hash, all of the batch in one command (after the answers, so
        // the replies' positions stay those of the answers).
        let ids: Vec<&str> = finals
            .iter()
            .filter_map(|f| f.route.as_ref().map(|r| r.task.as_str()))
            .collect();
        if !ids.is_empty() {
            pipe.cmd("HDEL").arg(self.running_key()).arg(&ids).ignore();
        }
        pipe
    }
}
