//! The keeper: every third of a lease renews the leases of the entries this worker runs,
//! sends a heartbeat, reclaims the entries of silent workers, prunes the running hash; and
//! every 250 ms promotes due scheduled tasks and fires due periodic ones.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ::redis::Value;

use super::reader::Mark;
use super::{ANSWERED, Exec, PROMOTE_BATCH, PROMOTE_EVERY, Worker};
use crate::redis::conn::Link;
use crate::redis::host;
use crate::redis::periodic;
use crate::redis::wire::{self, GROUP};

impl Worker {
    /// Renews leases, sends heartbeats and reclaims abandoned entries, every third of a
    /// lease, until the finisher is done.
    pub(super) fn keep_loop(self: &Arc<Self>) {
        let mut link = self.link("RedisWorker keeper", Duration::from_secs(30));
        let tick = self.cfg.lease / 3;
        let mut ticks = 0u64;
        let mut next = Instant::now();
        let mut promoted = Instant::now();
        while !self.drained.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= promoted + PROMOTE_EVERY {
                if !self.stopping() {
                    self.promote(&mut link);
                    self.fire_periodic(&mut link);
                }
                // Also while draining: a stuck task must stay killable, or the drain waits
                // for it to end by itself.
                self.check_kills(&mut link);
                promoted = now;
            }
            if now < next {
                let mut running = self.running.lock();
                self.freed
                    .wait_for(&mut running, (next - now).min(Duration::from_millis(200)));
                continue;
            }
            next = now + tick;
            let give_up = || self.drained.load(Ordering::SeqCst);
            self.renew(&mut link, &give_up);
            self.heartbeat(&mut link);
            self.prune_running(&mut link);
            if !self.stopping() {
                self.reclaim(&mut link, &give_up);
            }
            if ticks % 30 == 0 {
                let idle = wire::millis(
                    self.cfg
                        .lease
                        .saturating_mul(10)
                        .max(Duration::from_secs(60)),
                );
                let _ = link.once(|con| {
                    self.scripts
                        .prune
                        .key(&self.keys.queue)
                        .arg(GROUP)
                        .arg(idle)
                        .invoke::<i64>(con)
                });
            }
            ticks += 1;
        }
        // Leaving: forget this consumer (if it holds nothing) and its heartbeat.
        let _ = link.once(|con| {
            self.scripts
                .prune
                .key(&self.keys.queue)
                .arg(GROUP)
                .arg(u64::MAX)
                .arg(&self.name)
                .invoke::<i64>(con)?;
            ::redis::pipe()
                .cmd("ZREM")
                .arg(&self.keys.workers)
                .arg(&self.name)
                .cmd("DEL")
                .arg(self.worker_key())
                .query::<()>(con)
        });
    }

    /// Moves the scheduled tasks that are due into the queue (every worker does, every
    /// `PROMOTE_EVERY`; the script moves each task once however many run it).
    pub(super) fn promote(&self, link: &mut Link) {
        loop {
            let moved = link.once(|con| {
                self.scripts
                    .promote
                    .key(&self.keys.scheduled)
                    .key(&self.keys.payloads)
                    .key(&self.keys.queue)
                    .arg(host::now_ms())
                    .arg(PROMOTE_BATCH)
                    .arg(self.keys.ids_prefix())
                    .invoke::<u64>(con)
            });
            match moved {
                Ok(n) if n >= PROMOTE_BATCH => continue, // more may be due
                Ok(_) => return,
                Err(e) => {
                    log::debug!(target: "concurrent_futures::redis", "cannot promote scheduled tasks: {e}");
                    return;
                }
            }
        }
    }

    /// Fires the ticks of periodic tasks that are due (every worker does, every
    /// `PROMOTE_EVERY`; the `FIRE` script lets exactly one fire each tick).
    pub(super) fn fire_periodic(&self, link: &mut Link) {
        let now = host::now_ms();
        let due = link.once(|con| {
            ::redis::cmd("ZRANGEBYSCORE")
                .arg(&self.keys.periodic_due)
                .arg("-inf")
                .arg(now)
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(100)
                .query::<Value>(con)
        });
        let Ok(due) = due else { return };
        let items = wire::array(&due).unwrap_or(&[]);
        for pair in items.chunks(2) {
            let (Some(name), Some(tick)) = (
                pair.first().and_then(wire::text),
                pair.get(1)
                    .and_then(wire::text)
                    .and_then(|t| t.parse::<f64>().ok()),
            ) else {
                continue;
            };
            if periodic::check_name(name).is_err() || !(0.0..1e15).contains(&tick) {
                continue;
            }
            let tick = tick as u64;
            // Its size first: a value written by someone else is read only if it is small.
            let spec = link.once(|con| {
                let len: u64 = ::redis::cmd("HSTRLEN")
                    .arg(&self.keys.periodic)
                    .arg(name)
                    .query(con)?;
                if len == 0 || len > periodic::MAX_SPEC {
                    return Ok(None);
                }
                ::redis::cmd("HGET")
                    .arg(&self.keys.periodic)
                    .arg(name)
                    .query::<Option<Vec<u8>>>(con)
            });
            let spec = match spec {
                Ok(Some(bytes)) => periodic::Spec::read(&bytes),
                Ok(None) => None,
                Err(_) => return,
            };
            let Some(spec) = spec else {
                // Removed, or unreadable: it leaves the due set (a new `schedule` puts it
                // back, with its spec, in one step).
                log::warn!(target: "concurrent_futures::redis", "periodic task {name:?} has no valid schedule: removed from the due set");
                let _ = link.once(|con| {
                    ::redis::cmd("ZREM")
                        .arg(&self.keys.periodic_due)
                        .arg(name)
                        .query::<()>(con)
                });
                continue;
            };
            let now = host::now_ms();
            let Some(next) = spec.schedule.next_after(tick, now.max(tick)) else {
                continue;
            };
            let run = match spec.schedule.missed_policy() {
                periodic::Missed::Skip => now.saturating_sub(tick) <= periodic::SKIP_GRACE_MS,
                _ => true,
            };
            let task = format!("{name}@{tick}");
            let fired = link.once(|con| {
                let mut cmd = wire::evalsha(
                    &self.scripts.fire,
                    &[
                        &self.keys.periodic_due,
                        &self.keys.queue,
                        &self.keys.ids(&task),
                        &self.keys.periodic,
                    ],
                );
                cmd.arg(name)
                    .arg(tick)
                    .arg(next)
                    .arg(if run { "1" } else { "0" })
                    .arg(&task)
                    .arg(wire::millis(self.cfg.queue_ttl));
                for (k, v) in &spec.fields {
                    cmd.arg(k).arg(v);
                }
                cmd.arg("id").arg(&task);
                cmd.query::<i64>(con)
            });
            match fired {
                Ok(1) if run => log::debug!(target: "concurrent_futures::redis", "fired {task}"),
                Ok(1) => {
                    log::info!(target: "concurrent_futures::redis", "skipped tick {task}: found {} ms late (Missed::Skip)", now.saturating_sub(tick))
                }
                Ok(_) => {}
                Err(e) if e.code() == Some("NOSCRIPT") => {
                    let _ = link.once(|con| self.scripts.load(con));
                    return;
                }
                Err(e) => {
                    log::debug!(target: "concurrent_futures::redis", "cannot fire {task}: {e}");
                    return;
                }
            }
        }
    }

    /// Removes from this worker's running hash the tasks it no longer runs: a start mark
    /// can reach Redis after the task's answer (they travel on different connections).
    pub(super) fn prune_running(&self, link: &mut Link) {
        let Ok(listed) = link.once(|con| {
            ::redis::cmd("HKEYS")
                .arg(self.running_key())
                .query::<Vec<String>>(con)
        }) else {
            return;
        };
        let stale: Vec<String> = {
            let running = self.running.lock();
            listed
                .into_iter()
                .filter(|id| {
                    !running
                        .values()
                        .any(|r| r.run != ANSWERED && r.entry.route.task == *id)
                })
                .collect()
        };
        if !stale.is_empty() {
            let _ = link.once(|con| {
                ::redis::cmd("HDEL")
                    .arg(self.running_key())
                    .arg(&stale)
                    .query::<()>(con)
            });
        }
    }

    pub(super) fn renew(&self, link: &mut Link, give_up: &dyn Fn() -> bool) {
        let ids: Vec<String> = self.running.lock().keys().cloned().collect();
        for batch in ids.chunks(500) {
            let lost = link.retry(&self.scripts, give_up, |con| {
                let mut inv = wire::evalsha(&self.scripts.renew, &[&self.keys.queue]);
                inv.arg(GROUP).arg(&self.name);
                for id in batch {
                    inv.arg(id);
                }
                inv.query::<Vec<String>>(con)
            });
            for id in lost.unwrap_or_default() {
                log::warn!(target: "concurrent_futures::redis", "lost the lease of {id}: another worker holds it (this run's answer will be dropped), or Redis no longer has it (it will be delivered)");
            }
        }
    }

    /// Takes up the kill requests for entries this worker runs (`RedisExecutor::kill`):
    /// kills their processes (process mode) and has the finisher answer them cancelled.
    fn check_kills(&self, link: &mut Link) {
        let ids: Vec<String> = self
            .running
            .lock()
            .iter()
            .filter(|(_, r)| r.run != ANSWERED && !r.killed)
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        let Ok(asked) = link.once(|con| {
            ::redis::cmd("HMGET")
                .arg(&self.keys.kill)
                .arg(&ids)
                .query::<Vec<Option<String>>>(con)
        }) else {
            return;
        };
        let hits: Vec<&String> = ids
            .iter()
            .zip(&asked)
            .filter(|(_, a)| a.is_some())
            .map(|(id, _)| id)
            .collect();
        if hits.is_empty() {
            return;
        }
        let _ = link.once(|con| {
            ::redis::cmd("HDEL")
                .arg(&self.keys.kill)
                .arg(&hits)
                .query::<()>(con)
        });
        let mut doomed = Vec::new();
        {
            let mut running = self.running.lock();
            for id in &hits {
                if let Some(r) = running.get_mut(*id) {
                    r.killed = true;
                    doomed.append(&mut r.pool_ids);
                    log::warn!(target: "concurrent_futures::redis", "task {} ({}) killed on request", r.entry.route.task, r.entry.name);
                }
            }
        }
        #[cfg(all(unix, feature = "process"))]
        if let Exec::Processes(pool) = &self.exec {
            for id in doomed {
                pool.kill_task_id(id);
            }
        }
        #[cfg(not(all(unix, feature = "process")))]
        drop(doomed);
        // The finisher answers them now, not at its next timer.
        let _ = self.tx.send(super::Msg::Final(super::Final::wake()));
    }

    pub(super) fn heartbeat(&self, link: &mut Link) {
        let now = host::now_ms();
        let keep = wire::millis(
            self.cfg
                .lease
                .saturating_mul(10)
                .max(Duration::from_secs(60)),
        );
        let running = self.running.lock().len();
        let _ = link.once(|con| {
            ::redis::pipe()
                .cmd("ZADD")
                .arg(&self.keys.workers)
                .arg(now)
                .arg(&self.name)
                .ignore()
                .cmd("ZREMRANGEBYSCORE")
                .arg(&self.keys.workers)
                .arg("-inf")
                .arg(now.saturating_sub(keep))
                .ignore()
                .cmd("PEXPIRE")
                .arg(&self.keys.workers)
                .arg(keep)
                .ignore()
                .cmd("HSET")
                .arg(self.worker_key())
                .arg("host")
                .arg(&self.host)
                .arg("pid")
                .arg(std::process::id())
                .arg("concurrency")
                .arg(self.cfg.concurrency)
                .arg("running")
                .arg(running)
                .arg("completed")
                .arg(self.completed.load(Ordering::Relaxed))
                .arg("lease_ms")
                .arg(wire::millis(self.cfg.lease))
                .arg("mode")
                .arg(match self.exec {
                    Exec::Threads(_) => "threads",
                    #[cfg(all(unix, feature = "process"))]
                    Exec::Processes(_) => "processes",
                })
                .ignore()
                .cmd("PEXPIRE")
                .arg(self.worker_key())
                .arg(keep)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&self.keys.queue)
                .arg(wire::millis(self.cfg.queue_ttl))
                .ignore()
                .query::<()>(con)
        });
        // The queue's history (`RedisExecutor::history`): Redis keeps one sample a period,
        // whichever worker offers it.
        let _ = link.once(|con| {
            self.scripts
                .sample
                .key(&self.keys.queue)
                .key(&self.keys.stats)
                .key(&self.keys.counts)
                .arg(GROUP)
                .arg(wire::millis(self.cfg.sample_every))
                .arg(wire::MAX_SAMPLES)
                .arg(wire::millis(wire::HISTORY_TTL))
                .invoke::<i64>(con)
        });
        #[cfg(feature = "metrics")]
        super::meter::queue(link, &self.keys.queue);
    }

    /// Takes over entries idle for a lease (their worker stopped renewing them).
    ///
    /// In thread mode a taken-over task runs alone: the task that killed its last worker
    /// (an abort, a segfault, the OOM killer) kills no innocent task with it a second time.
    /// When entries are waiting to be taken over, this worker stops taking new ones, lets
    /// its running tasks end, then claims the waiting ones one at a time and runs each by
    /// itself. So a poison task uses up its `max_deliveries` alone and fails with
    /// `WorkerLost`, and the tasks that died beside it run again and complete.
    pub(super) fn reclaim(self: &Arc<Self>, link: &mut Link, give_up: &dyn Fn() -> bool) {
        let mut free = self.free_slots();
        if self.shares_fate() {
            let waiting = link.retry(&self.scripts, give_up, |con| {
                let reply = ::redis::cmd("XPENDING")
                    .arg(&self.keys.queue)
                    .arg(GROUP)
                    .arg("IDLE")
                    .arg(wire::millis(self.cfg.lease))
                    .arg("-")
                    .arg("+")
                    .arg(1)
                    .query::<Value>(con);
                match reply {
                    Ok(v) => Ok(wire::array(&v).is_some_and(|rows| !rows.is_empty())),
                    Err(e) if e.code() == Some("NOGROUP") => Ok(false),
                    Err(e) => Err(e),
                }
            });
            if !waiting.unwrap_or(false) {
                self.isolating.store(false, Ordering::SeqCst);
                self.freed.notify_all(); // the reader may take new entries again
                return;
            }
            self.isolating.store(true, Ordering::SeqCst);
            if !self.running.lock().is_empty() {
                return; // the next tick looks again, once the running tasks have ended
            }
            free = 1;
        }
        if free == 0 {
            return;
        }
        let claimed = link.retry(&self.scripts, give_up, |con| {
            let reply = ::redis::cmd("XAUTOCLAIM")
                .arg(&self.keys.queue)
                .arg(GROUP)
                .arg(&self.name)
                .arg(wire::millis(self.cfg.lease))
                .arg("0-0")
                .arg("COUNT")
                .arg(free)
                .query::<Value>(con);
            let entries = match reply {
                Ok(v) => wire::array(&v)
                    .and_then(|parts| parts.get(1))
                    .map(wire::entries)
                    .unwrap_or_default(),
                Err(e) if e.code() == Some("NOGROUP") => Vec::new(),
                Err(e) => return Err(e),
            };
            if entries.is_empty() {
                return Ok(Vec::new());
            }
            // The delivery count of each, now that it is ours: the fence of our answer.
            let mut pipe = ::redis::pipe();
            for e in &entries {
                pipe.cmd("XPENDING")
                    .arg(&self.keys.queue)
                    .arg(GROUP)
                    .arg(&e.id)
                    .arg(&e.id)
                    .arg(1);
            }
            let counts: Vec<Value> = pipe.query(con)?;
            Ok(entries
                .into_iter()
                .zip(counts)
                .filter_map(|(e, c)| {
                    let row = wire::array(&c)?.first().and_then(wire::array)?.to_vec();
                    let owner = row.get(1).and_then(wire::text)?;
                    let count = row.get(3).and_then(wire::int)?;
                    (owner == self.name).then_some((e, u64::try_from(count).ok()?))
                })
                .collect())
        });
        let claimed = claimed.unwrap_or_default();
        for (raw, attempt) in &claimed {
            log::info!(target: "concurrent_futures::redis", "reclaimed {} (delivery {attempt}) from a silent worker", raw.id);
            self.take(raw, *attempt);
        }
        let marks: Vec<Mark> = claimed
            .iter()
            .filter_map(|(raw, _)| Mark::of(raw))
            .collect();
        self.send_marks(link, &marks);
    }
}
