//! The writer: sends queued tasks in pipelined batches through the `SUBMIT` script (one
//! round trip for everything submitted meanwhile), and an idle client's task inline on the
//! control link, whose reply is then *owed* and read by whoever uses the link next.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

use ::redis::Value;
use crossbeam_channel::Receiver;
use parking_lot::{Condvar, Mutex};

use super::book::{Slot, SlotState, Unsent, Waiting};
use super::{BATCH, Shared, WRITER_TIMEOUT};
use crate::error::{SubmitError, TaskError};
use crate::future::Future;
use crate::options::TaskOptions;
use crate::redis::conn::{self, Link, Patience};
use crate::redis::host;
use crate::redis::id::TaskId;
use crate::redis::wire::{self, FORMAT, GROUP};

/// The control connection, and the task `submit` wrote on it whose replies are unread.
pub(super) struct Control {
    pub(super) link: Link,
    /// A task written by `submit` (an idle client's, sent without waking the writer) and
    /// how many replies it owes (its `XADD`, and a `PEXPIRE` when the queue's TTL was
    /// refreshed with it). Whoever uses the link next reads them first
    /// ([`Shared::settle`]); the writer is told to.
    pub(super) owed: Option<(Unsent, usize, u64)>,
}

pub(super) enum Outgoing {
    Task {
        seq: u64,
        slot: Arc<Slot>,
        fields: Vec<(&'static str, String)>,
    },
    /// Read the replies owed on the control link.
    Settle,
    Stop,
}

impl Shared {
    /// Queues a task: records how to complete it, then hands it to the writer.
    pub(super) fn send<T: Send + 'static>(
        self: &Arc<Self>,
        name: &str,
        chunk: bool,
        args: String,
        opts: TaskOptions,
        trace: Option<String>,
        decode: impl for<'b> FnOnce(Result<&'b [u8], TaskError>) -> Result<T, TaskError>
        + Send
        + 'static,
    ) -> Result<Future<T>, SubmitError<()>> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let unique = opts.id.is_some();
        let task = super::options::chosen_id(&opts).unwrap_or_else(TaskId::generate);
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
        if let Some(trace) = trace {
            fields.push(("tp", trace));
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
    pub(super) fn send_inline(&self, control: &mut Control, out: Unsent) -> Option<Unsent> {
        let (seq, slot, fields) = out;
        if !slot.begin_send() {
            return None; // cancelled already
        }
        // The queue's TTL is a week: refreshing it once a minute is plenty, and keeps the
        // command off most round trips.
        let now = host::now_ms();
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
    pub(super) fn submit_cmd<'a>(
        &self,
        batch: impl IntoIterator<Item = (&'a Slot, &'a [(&'static str, String)])>,
        refresh: bool,
    ) -> ::redis::Cmd {
        let mut cmd = wire::evalsha(
            &self.scripts.submit,
            &[&self.keys.queue, &self.keys.scheduled, &self.keys.payloads],
        );
        let now = host::now_ms();
        let ttl = wire::millis(self.cfg.queue_ttl);
        cmd.arg(&self.client_id)
            .arg(if refresh { ttl } else { 0 })
            .arg(GROUP);
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
    pub(super) fn settle(&self, control: &mut Control) {
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
        if conn::refused_for_now(replies.first()).is_some()
            || replies.first().is_some_and(wire::is_no_script)
        {
            // Refused for now (Redis is loading, say), or the scripts are not loaded (Redis
            // restarted): the writer retries it.
            slot.back_to_local();
            let _ = self.outbox.send(Outgoing::Task { seq, slot, fields });
        } else {
            self.sent(seq, &slot, replies.first());
        }
    }

    /// Records the entry id of a sent task, or fails the task if Redis refused it.
    pub(super) fn sent(&self, seq: u64, slot: &Slot, reply: Option<&Value>) {
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
                if parts.get(2).and_then(wire::int) == Some(1) {
                    // ... that a worker holds.
                    let held = self.book.lock().waiting.get(&seq).map(|w| w.cancel.clone());
                    if let Some(task) = held {
                        task.started();
                    }
                }
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

    /// Wakes the reader out of its `XREAD BLOCK` with an entry that completes nothing.
    pub(super) fn wake_reader(&self) {
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
pub(super) fn writer(shared: &Arc<Shared>, rx: &Receiver<Outgoing>) {
    // Futures failed here (an outage past the limit) run their callbacks elsewhere.
    crate::context::defer_callbacks(shared.callback_sink());
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
                if replies.get(i).is_some_and(wire::is_no_script) {
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
